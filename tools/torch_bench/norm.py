"""Torch CPU reference timings for benches/norm.rs: the same group_norm / layer_norm shapes,
f32, 2 threads (the shared 2-core machine), warm-up then the median of 15 runs.

    /opt/torchref/bin/python tools/torch_bench/norm.py [threads]
Run it right next to `cargo bench --bench norm`; compare ratios, not absolute times. On a busy
shared machine, 2 OpenMP threads can stall on a barrier for a whole scheduler tick (~12 ms per
call); compare 1 thread against `RAYON_NUM_THREADS=1 cargo bench --bench norm` then.
"""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch.manual_seed(0)


def median_ms(fn, runs=15, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def report(name, x, fn):
    ms = median_ms(fn)
    gbs = 2 * 4 * x.numel() / (ms * 1e-3) / 1e9
    print(f"{name}: {ms:.3f} ms, {gbs:.2f} GB/s")


with torch.no_grad():
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    for n in (1, 2):
        for c, hw in ((320, 64), (640, 32), (1280, 16)):
            x = torch.randn(n, c, hw, hw)
            w, b = torch.randn(c) * 0.1 + 1, torch.randn(c) * 0.1
            report(f"group_norm {n}x{c}x{hw}x{hw} g32", x, lambda: F.group_norm(x, 32, w, b, 1e-5))
    x = torch.randn(4096, 320)
    w, b = torch.randn(320) * 0.1 + 1, torch.randn(320) * 0.1
    report("layer_norm 4096x320", x, lambda: F.layer_norm(x, (320,), w, b, 1e-5))
