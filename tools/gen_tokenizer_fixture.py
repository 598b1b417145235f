#!/usr/bin/env python3
"""Writes tests/fixtures/clip_tokenizer_cases.json: CLIP token ids from transformers' CLIPTokenizer
for varied prompts, the parity reference for tests/clip_tokenizer.rs.

Reference: transformers >= 5 `CLIPTokenizer`, loaded from the committed
weights/clip_tokenizer/{vocab.json,merges.txt} (see tools/fetch_clip_bpe.py). In transformers 5 this
class is backed by the `tokenizers` library (the pipeline formerly called CLIPTokenizerFast) and never
uses ftfy: NFC + whitespace collapse + lowercase, CLIP's regex, byte-level BPE. (transformers 4's slow
CLIPTokenizer ran ftfy.fix_text when ftfy was installed, else BERT's BasicTokenizer, which also spaces
out CJK characters; those paths are not the reference here.) The script refuses to run on 4.x.
Cross-check done when this fixture was made: open_clip 3.3.0's SimpleTokenizer (OpenAI's original
code, ftfy replaced by identity) gives the same ids for every case except three it treats differently
by design: the two prompts with literal <|startoftext|>/<|endoftext|> (special only in transformers)
and the decomposed accent (composed by ftfy's NFC there, by the NFC normalizer here).

Each case: prompt, ids (padding="max_length", max_length=77, truncation=True), length (real tokens,
= sum of attention_mask), unpadded (ids with no truncation or padding).

Set up (no torch needed; the network only for pip):
  python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install 'transformers>=5'
  /tmp/tokvenv/bin/python tools/gen_tokenizer_fixture.py
"""
import json
import os

import transformers
from transformers import CLIPTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MAX_LEN = 77

PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "",
    "   ",
    "A PHOTOGRAPH Of An ASTRONAUT",
    "a red car, parked on the street; 4k, highly detailed!!!",
    "it's a dog's life, isn't it? we're here, they've gone, I'm fine, you'll see, he'd know",
    "IT'S LOUD",
    "  leading and   trailing\twhitespace\n\nwith\ttabs\r\nand newlines  ",
    "1234567890 and 3.14159 and 1,000,000 and 2nd 3rd 10th",
    "café crème brûlée à la mode, naïve façade, Ångström, Straße",
    "e\u0301cole (decomposed accent, NFC composes it)",
    "東京の夜景、ネオンサイン",
    "猫と犬 and a 한국어 sign and 中文字",
    "a cat 🐱 with a dog 🐶, fire 🔥🔥 and a flag 🇯🇵",
    "👩‍🚀 astronaut emoji with a zero-width joiner",
    "mixed: Привет мир, Γειά σου κόσμε, مرحبا بالعالم, שלום",
    "symbols: @user #hashtag $100 50% a&b <tag> [x] {y} (z) a|b ~tilde `tick` ^caret",
    "quotes \"double\" 'single' “curly” ‘curly’ «guillemets» — em-dash – en-dash … ellipsis",
    "a cat <|endoftext|> a dog",
    "<|startoftext|>already wrapped<|endoftext|>",
    "upper special <|ENDOFTEXT|> stays text",
    "masterpiece, best quality, (ultra-detailed:1.2), [[portrait]], {{{cinematic}}}",
    "snake_case_words and kebab-case-words and CamelCaseWords and http://example.com/a?b=c",
    "hyper-realistic 8k uhd dslr, soft lighting, film grain, Fujifilm XT3",
    "non\u00a0breaking\u2003em space\u3000ideographic space",
    "full-width ＡＢＣ１２３ letters and digits",
    "control\u0000chars\u0007here",
    "a " * 75,  # exactly 77 tokens with BOS/EOS: no truncation
    "a " * 76,  # one over: the last content token gives way to EOS
    "a very long prompt describing " + ", ".join(
        f"detail number {i} with ornate gold filigree" for i in range(30)
    ),
]


def main():
    major = int(transformers.__version__.split(".")[0])
    if major < 5:
        raise SystemExit(f"transformers {transformers.__version__}: need >= 5 (see the docstring)")
    tok = CLIPTokenizer.from_pretrained(os.path.join(ROOT, "weights", "clip_tokenizer"))
    cases = []
    for p in PROMPTS:
        enc = tok(p, padding="max_length", max_length=MAX_LEN, truncation=True)
        unpadded = tok(p).input_ids
        assert len(enc.input_ids) == MAX_LEN
        cases.append({
            "prompt": p,
            "ids": enc.input_ids,
            "length": int(sum(enc.attention_mask)),
            "unpadded": unpadded,
        })
    assert cases[0]["unpadded"] == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert any(len(c["unpadded"]) > MAX_LEN for c in cases)
    out = {
        "reference": f"transformers {transformers.__version__} CLIPTokenizer (no ftfy), "
                     "weights/clip_tokenizer vocab.json + merges.txt",
        "max_length": MAX_LEN,
        "pad_id": tok.pad_token_id,
        "cases": cases,
    }
    write_cases(out, "clip_tokenizer_cases.json")


def write_cases(out, name):
    """Writes tests/fixtures/<name>, one case per line so a changed case is a small diff."""
    path = os.path.join(ROOT, "tests", "fixtures", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        head = json.dumps({k: v for k, v in out.items() if k != "cases"}, ensure_ascii=False)[:-1]
        f.write(head + ', "cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=False) for c in out["cases"]))
        f.write("\n]}\n")
    print(f"wrote {len(out['cases'])} cases to {os.path.normpath(path)}")


if __name__ == "__main__":
    main()
