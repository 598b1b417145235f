"""Torch CPU reference timings for examples/lpips_timing.rs: lpips 0.1.4 LPIPS(net='vgg') with
the converted weights (weights/lpips/vgg16_lpips.safetensors when present, else random), f32,
2 threads, batch 4 at 64×64 and 256×256: forward under no_grad, and forward + backward to the
second image only (the training case), median of 7 / 3 runs after one warm-up.

    /opt/torchref/bin/python tools/torch_bench/lpips_vgg.py [threads]
Run it right next to `cargo run --release --example lpips_timing`; compare ratios, not times.
Needs `pip install lpips==0.1.4` (and torchvision).
"""
import os
import statistics
import sys
import time

import torch

import lpips

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from gen_lpips_fixture import ROOT, load_engine_weights, lpips_vgg  # noqa: E402

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)


def median_ms(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


model = lpips_vgg()
path = os.path.join(ROOT, "weights", "lpips", "vgg16_lpips.safetensors")
if os.path.exists(path):
    from safetensors.torch import load_file
    load_engine_weights(model, load_file(path))
for p in model.parameters():
    p.requires_grad_(False)
print(f"torch {torch.__version__}, lpips {lpips.__version__ if hasattr(lpips, '__version__') else '0.1.4'}, threads {torch.get_num_threads()}")
for hw, runs in ((64, 7), (256, 3)):
    x = torch.rand(4, 3, hw, hw) * 2 - 1
    y = torch.rand(4, 3, hw, hw) * 2 - 1

    def fwd():
        with torch.no_grad():
            model(x, y)

    def train():
        v = y.clone().requires_grad_()
        model(x, v).mean().backward()

    print(f"batch 4 at {hw}x{hw}: forward {median_ms(fwd, runs):.1f} ms, forward+backward {median_ms(train, runs):.1f} ms")
