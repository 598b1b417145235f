"""An independent judge of generated MNIST digits: a small CNN trained with torch on the held-out
split the diffusion model never saw (every 5th digit of data/mnist.safetensors, index % 5 == 4:
`"holdout_every": 5` in configs/ldm_mnist_class.json), tested on the other 8,000 real digits, then
used to classify the engine's samples.

    python tools/mnist_classifier.py train --out RUN/classifier.pt
    python tools/mnist_classifier.py eval --model RUN/classifier.pt --samples DIR [--json OUT.json]

`eval` reads DIR/<class>/*.png (what tools/eval_default_model.sh writes with `ldm-engine sample`),
and reports per-class and overall accuracy: the share of samples asked for class c that the
classifier calls c. Digits are padded 28 → 32 as the diffusion model's data were, values in [0, 1].
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from safetensors.numpy import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
HOLDOUT_EVERY = 5


def load_mnist():
    d = load_file(os.path.join(ROOT, "data", "mnist.safetensors"))
    x = np.pad(d["images"].astype(np.float32) / 255.0, ((0, 0), (2, 2), (2, 2)))
    return torch.from_numpy(x)[:, None], torch.from_numpy(d["labels"].astype(np.int64))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(1, 32, 3, padding=1), nn.Conv2d(32, 64, 3, padding=1), nn.Conv2d(64, 128, 3, padding=1)
        self.fc = nn.Linear(128 * 4 * 4, 10)
        self.drop = nn.Dropout(0.3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.max_pool2d(F.relu(self.c3(x)), 2)
        return self.fc(self.drop(x.flatten(1)))


def shift(x, g):
    """Random translations of up to 2 pixels (the digits vary in position)."""
    dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def train(args):
    torch.manual_seed(0)
    x, y = load_mnist()
    held = torch.arange(len(y)) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    xtr, ytr, xte, yte = x[held], y[held], x[~held], y[~held]
    net, g = Net(), torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        net.train()
        perm = torch.randperm(len(ytr), generator=g)
        for i in range(0, len(ytr), 64):
            idx = perm[i:i + 64]
            loss = F.cross_entropy(net(shift(xtr[idx], g)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(xte).argmax(1) == yte).float().mean().item()
    torch.save(net.state_dict(), args.out)
    print(f"trained on {len(ytr)} held-out digits, {args.epochs} epochs; accuracy on the other {len(yte)} real digits: {acc:.4f}")
    print(f"wrote {args.out}")


def evaluate(args):
    net = Net()
    net.load_state_dict(torch.load(args.model))
    net.eval()
    per_class, total, right = {}, 0, 0
    for c in range(10):
        d = os.path.join(args.samples, str(c))
        if not os.path.isdir(d):
            continue
        files = sorted(f for f in os.listdir(d) if f.endswith(".png"))
        imgs = np.stack([np.asarray(Image.open(os.path.join(d, f)).convert("L"), dtype=np.float32) / 255.0 for f in files])
        with torch.no_grad():
            pred = net(torch.from_numpy(imgs)[:, None]).argmax(1).numpy()
        per_class[c] = {"samples": len(files), "accuracy": float((pred == c).mean()), "predicted": np.bincount(pred, minlength=10).tolist()}
        total += len(files)
        right += int((pred == c).sum())
    if total == 0:
        sys.exit(f"{args.samples}: no <class>/*.png samples found")
    report = {"samples": total, "accuracy": right / total, "per_class": per_class}
    for c, r in per_class.items():
        print(f"class {c}: {r['accuracy']:.4f} of {r['samples']} (predicted counts {r['predicted']})")
    print(f"overall: {right}/{total} = {right / total:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", required=True)
    t.add_argument("--epochs", type=int, default=30)
    e = sub.add_parser("eval")
    e.add_argument("--model", required=True)
    e.add_argument("--samples", required=True)
    e.add_argument("--json")
    args = p.parse_args()
    {"train": train, "eval": evaluate}[args.cmd](args)


if __name__ == "__main__":
    main()
