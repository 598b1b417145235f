#!/usr/bin/env python3
"""Writes weights/clip_tokenizer/{vocab.json,merges.txt}: CLIP's BPE tokenizer in the Hugging Face
format (the files a Stable Diffusion 1.x diffusers folder ships under tokenizer/).

Source: `open_clip/bpe_simple_vocab_16e6.txt.gz` from the open-clip-torch wheel on PyPI (MIT, a copy of
OpenAI's CLIP file). The vocabulary is built exactly as open_clip's SimpleTokenizer and OpenAI's
clip/simple_tokenizer.py build it:
  ids 0..256      the 256 bytes_to_unicode characters (GPT-2 order)
  ids 256..512    the same characters with "</w>" appended
  ids 512..49406  one token per merge "a b" -> "ab", merges 1..=48894 of the file (line 0 is a header;
                  the file holds ~262k merges but CLIP keeps only 49152 - 256 - 2 = 48894)
  49406, 49407    <|startoftext|>, <|endoftext|>
merges.txt is "#version: 0.2" followed by those 48894 merge lines, which is what transformers'
CLIPTokenizer and the tokenizers BPE model read.

Usage: python3 tools/fetch_clip_bpe.py [--wheel PATH]   (needs pip and network unless --wheel is given)
Standard library only.
"""
import argparse
import glob
import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile

N_MERGES = 49152 - 256 - 2  # 48894, as in the reference tokenizers
GZ_IN_WHEEL = "open_clip/bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode():
    # GPT-2's reversible byte -> printable-character map; order matters (it fixes ids 0..256).
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def fetch_wheel(dest):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "open-clip-torch", "-d", dest], check=True)
    wheels = glob.glob(os.path.join(dest, "open_clip_torch-*.whl"))
    if not wheels:
        sys.exit("pip download produced no open_clip_torch wheel")
    return wheels[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", help="an already downloaded open_clip_torch-*.whl")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "weights", "clip_tokenizer"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(tmp)
        with zipfile.ZipFile(wheel) as z:
            text = gzip.decompress(z.read(GZ_IN_WHEEL)).decode("utf-8")
    print(f"read {GZ_IN_WHEEL} from {os.path.basename(wheel)}")

    lines = text.split("\n")
    merges = lines[1 : N_MERGES + 1]
    assert len(merges) == N_MERGES, len(merges)
    for m in merges:
        assert len(m.split(" ")) == 2, repr(m)

    chars = bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars] + [m.replace(" ", "") for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408 and len(set(vocab)) == 49408, "duplicate tokens"

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "vocab.json"), "w", encoding="utf-8") as f:
        # Ordered by id, non-ASCII kept literal (as transformers writes vocab.json).
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(args.out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
