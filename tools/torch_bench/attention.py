"""torch CPU reference timings for benches/attention.rs: the same SD shapes, 2 threads.

Run: /opt/torchref/bin/python tools/torch_bench/attention.py
Prints one line per shape: median ms over >= 10 timed runs after warm-up, and GFLOP/s counted as
4*B*H*Lq*Lk*D (the two matrix products; the softmax is not counted), like the Rust bench.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

# TORCH_THREADS=1 pairs with RAYON_NUM_THREADS=1 for a comparison less disturbed by shared load.
torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
torch.manual_seed(0)

SHAPES = [
    # name, B, H, Lq, Lk, D
    ("self 4096 hd40", 1, 8, 4096, 4096, 40),
    ("self 1024 hd80", 1, 8, 1024, 1024, 80),
    ("cross 4096x77 hd40", 1, 8, 4096, 77, 40),
]

runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
with torch.inference_mode():
    for name, b, h, lq, lk, d in SHAPES:
        q = torch.randn(b, h, lq, d)
        k = torch.randn(b, h, lk, d)
        v = torch.randn(b, h, lk, d)
        for _ in range(3):
            F.scaled_dot_product_attention(q, k, v)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v)
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        gflops = 4 * b * h * lq * lk * d / (ms * 1e-3) / 1e9
        print(f"torch attn {name}: {ms:.2f} ms (min {min(times) * 1e3:.2f}), {gflops:.1f} GFLOP/s")
