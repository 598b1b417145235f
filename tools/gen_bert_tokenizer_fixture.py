#!/usr/bin/env python3
"""Writes tests/fixtures/bert_tokenizer_cases.json: bert-base-uncased WordPiece ids from transformers for
varied prompts, the parity reference for tests/bert_tokenizer.rs.

Reference: what CompVis latent-diffusion's BERTTokenizer runs for the paper's text2img model,
`BertTokenizerFast.from_pretrained("bert-base-uncased")(text, truncation=True, max_length=77,
padding="max_length")`, here loaded from the committed weights/bert_tokenizer/vocab.txt (see
tools/fetch_bert_vocab.py). In transformers >= 5 `BertTokenizerFast` is `BertTokenizer`, backed by the
`tokenizers` library exactly as the v4 fast class was. Its constructor takes `vocab=` (a dict), and a
`vocab_file=` keyword is silently ignored (you get a 5-token default vocabulary), so the script loads
through `from_pretrained(folder)` and checks the vocabulary size.
Cross-check: the slow, pure-Python tokenizer (v4's `BertTokenizer`, in v5
`transformers.models.bert.tokenization_bert_legacy.BertTokenizerLegacy`) must give the same padded
ids for every case; the script stops if it does not.

Each case: text, ids (padding="max_length", max_length=77, truncation=True), length (real tokens,
= sum of attention_mask), unpadded (ids with no truncation or padding), decoded (the fast tokenizer's
decode of `unpadded` with skip_special_tokens=True).

Run: /opt/torchref/bin/python tools/gen_bert_tokenizer_fixture.py   (any venv with transformers >= 5)
"""
import os
import sys

import transformers
from transformers import BertTokenizerFast
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_tokenizer_fixture import write_cases  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
VOCAB_DIR = os.path.join(ROOT, "weights", "bert_tokenizer")
MAX_LEN = 77

TEXTS = [
    "a photograph of an astronaut riding a horse",
    "",
    "   ",
    "A PHOTOGRAPH Of An ASTRONAUT",
    "a red car, parked on the street; 4k, highly detailed!!!",
    "it's a dog's life, isn't it? we're here, they've gone, I'm fine, you'll see, he'd know, don't",
    "  leading and   trailing\twhitespace\n\nwith\ttabs\r\nand newlines  ",
    "1234567890 and 3.14159 and 1,000,000 and 2nd 3rd 10th, 1990s",
    "café crème brûlée à la mode, naïve façade, Ångström, Straße, İstanbul",
    "e\u0301cole (decomposed accent) and Γειά σου κόσμε",
    "東京の夜景、ネオンサイン",
    "猫と犬 and a 한국어 sign and 中文abc字 without spaces",
    "a cat 🐱 with a dog 🐶, fire 🔥🔥 and a flag 🇯🇵",
    "👩‍🚀 astronaut emoji with a zero-width joiner, 🫠 melting",
    "mixed: Привет мир, مرحبا بالعالم, שלום, नमस्ते",
    "symbols: @user #hashtag $100 50% a&b <tag> [x] {y} (z) a|b ~tilde `tick` ^caret \\slash",
    "quotes \"double\" 'single' “curly” ‘curly’ «guillemets» — em-dash – en-dash … ellipsis",
    "a [MASK] in the text and [CLS] here [SEP] there",
    "[mask] and [cls] lowercase stay text, [PAD][UNK] glued",
    "masterpiece, best quality, (ultra-detailed:1.2), [[portrait]], {{{cinematic}}}",
    "snake_case_words and kebab-case-words and CamelCaseWords and http://example.com/a?b=c",
    "hyper-realistic 8k uhd dslr, soft lighting, film grain, Fujifilm XT3",
    "non\u00a0breaking\u2003em space\u3000ideographic space\u200bzero width\u00adsoft hyphen",
    "full-width ＡＢＣ１２３ letters and digits",
    "control\u0000chars\u0007here\ufffdand\u001bescape",
    "words that fall to unk: hello☃world, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 fraktur, ☃ snowman",
    "a" * 100 + " is exactly one hundred chars",
    "a" * 101 + " is one char too long for a word",
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "a " * 75,  # exactly 77 tokens with [CLS]/[SEP]: no truncation
    "a " * 76,  # one over: the last word gives way to [SEP]
    "a " * 74 + "astronautically photorealistic",  # cut inside a word's pieces
    "a very long prompt describing " + ", ".join(
        f"detail number {i} with ornate gold filigree" for i in range(30)
    ),
]


def main():
    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        raise SystemExit(f"transformers {transformers.__version__}: need >= 5 (see the docstring)")
    fast = BertTokenizerFast.from_pretrained(VOCAB_DIR, do_lower_case=True)
    slow = BertTokenizerLegacy(vocab_file=os.path.join(VOCAB_DIR, "vocab.txt"), do_lower_case=True)
    assert len(fast) == 30522 and len(slow) == 30522, (len(fast), len(slow))
    kw = dict(padding="max_length", max_length=MAX_LEN, truncation=True)
    cases = []
    for t in TEXTS:
        enc = fast(t, **kw)
        slow_ids = slow(t, **kw).input_ids
        if enc.input_ids != slow_ids:
            raise SystemExit(f"fast and slow tokenizers disagree on {t!r}:\n{enc.input_ids}\n{slow_ids}")
        unpadded = fast(t).input_ids
        assert slow(t).input_ids == unpadded, t
        assert len(enc.input_ids) == MAX_LEN
        cases.append({
            "text": t,
            "ids": enc.input_ids,
            "length": int(sum(enc.attention_mask)),
            "unpadded": unpadded,
            "decoded": fast.decode(unpadded, skip_special_tokens=True),
        })
    assert cases[0]["unpadded"] == [101, 1037, 9982, 1997, 2019, 19748, 5559, 1037, 3586, 102]
    assert sum(len(c["unpadded"]) > MAX_LEN for c in cases) >= 3
    assert any(100 in c["unpadded"] for c in cases)
    out = {
        "reference": f"transformers {transformers.__version__} BertTokenizerFast (= BertTokenizerLegacy, "
                     "checked), weights/bert_tokenizer/vocab.txt, do_lower_case=True",
        "max_length": MAX_LEN,
        "pad_id": fast.pad_token_id,
        "cls_id": fast.cls_token_id,
        "sep_id": fast.sep_token_id,
        "unk_id": fast.unk_token_id,
        "cases": cases,
    }
    write_cases(out, "bert_tokenizer_cases.json")


if __name__ == "__main__":
    main()
