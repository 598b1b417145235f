"""PyTorch on the GPU next to our tensor-core kernels, same shapes, same call (issue 8's ratio table).

Run on the GPU machine after `bench-tensor_core` (tools/gpu_check.sh does both):
    python tools/torch_bench/tensor_core.py --ours OURS.log --out TABLE.md
OURS.log is the bench's output; its `TC` lines (kind, shape, dtype, ms, TFLOP/s) name each shape.
For every one, torch times the same computation on the same GPU:
  conv2d fwd        F.conv2d(x, w, b) with cuDNN (benchmark mode), NCHW and channels_last; the
                    faster of the two is the reference (cuDNN picks its best algorithm for each)
  conv2d bwd data   torch.nn.grad.conv2d_input       conv2d bwd weight  torch.nn.grad.conv2d_weight
  attention fwd     F.scaled_dot_product_attention (flash / memory-efficient backends, as torch picks)
  linear            F.linear(x, w, b) (cuBLAS/cuBLASLt), x [M, K], w [N, K]
and the table gives ours/torch time ratios (below 1.0: we are faster). Timing: CUDA events around
batches of calls after warm-up, median of the batches, like the Rust bench.
"""
import argparse
import re
import statistics

import torch
import torch.nn.functional as F

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}


def time_ms(fn, min_batches=5, per_batch=3, budget_s=0.5):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    samples, spent = [], 0.0
    while len(samples) < min_batches or (spent < budget_s and len(samples) < 100):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(per_batch):
            fn()
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end) / per_batch
        samples.append(ms)
        spent += ms * per_batch / 1e3
    return statistics.median(samples)


def torch_conv(kind, shape, dtype):
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)x(\d+) k(\d+)", shape)
    n, c, h, w, k = map(int, m.groups())
    pad = k // 2
    dev = "cuda"
    x = torch.randn(n, c, h, w, device=dev, dtype=dtype)
    wt = torch.randn(c, c, k, k, device=dev, dtype=dtype) * 0.02
    b = torch.randn(c, device=dev, dtype=dtype)
    dy = torch.randn(n, c, h, w, device=dev, dtype=dtype)
    best = None
    for fmt in (torch.contiguous_format, torch.channels_last):
        xf, wf, dyf = (t.contiguous(memory_format=fmt) for t in (x, wt, dy))
        if kind.startswith("conv2d fwd"):  # a kernel-lab variant of the forward would be "conv2d fwd vN"
            fn = lambda: F.conv2d(xf, wf, b, padding=pad)
        elif kind == "conv2d bwd data":
            fn = lambda: torch.nn.grad.conv2d_input(xf.shape, wf, dyf, padding=pad)
        else:
            fn = lambda: torch.nn.grad.conv2d_weight(xf, wf.shape, dyf, padding=pad)
        ms = time_ms(fn)
        best = ms if best is None else min(best, ms)
    return best


def torch_attention(shape, dtype):
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)x(\d+) d(\d+)", shape)
    b, h, lq, lk, d = map(int, m.groups())
    q = torch.randn(b, h, lq, d, device="cuda", dtype=dtype)
    k = torch.randn(b, h, lk, d, device="cuda", dtype=dtype)
    v = torch.randn(b, h, lk, d, device="cuda", dtype=dtype)
    return time_ms(lambda: F.scaled_dot_product_attention(q, k, v))


def torch_linear(shape, dtype):
    m, k, n = map(int, re.fullmatch(r"(\d+)x(\d+)x(\d+)", shape).groups())
    x = torch.randn(m, k, device="cuda", dtype=dtype)
    w = torch.randn(n, k, device="cuda", dtype=dtype) * 0.02
    b = torch.randn(n, device="cuda", dtype=dtype)
    return time_ms(lambda: F.linear(x, w, b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True, help="output of bench-tensor_core")
    ap.add_argument("--out", required=True, help="markdown table to write")
    args = ap.parse_args()
    torch.backends.cudnn.benchmark = True
    rows = []
    for line in open(args.ours):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 6 or parts[0] != "TC":
            continue
        _, kind, shape, dt, ms, tflops = parts
        dtype = DTYPES[dt]
        with torch.inference_mode():
            if kind.startswith("attention"):
                ref = torch_attention(shape, dtype)
            elif kind.startswith("linear"):  # "linear v3": a kernel-lab variant
                ref = torch_linear(shape, dtype)
            else:
                ref = torch_conv(kind, shape, dtype)
        ours = float(ms)
        rows.append((kind, shape, dt, ours, float(tflops), ref, ours / ref))
        print(f"{kind:<18} {shape:<24} {dt:<5} ours {ours:8.3f} ms  torch {ref:8.3f} ms  ratio {ours / ref:5.2f}", flush=True)
    with open(args.out, "w") as f:
        f.write(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}\n\n")
        f.write("| op | shape | dtype | ours ms | ours TFLOP/s | torch ms | ours/torch |\n|---|---|---|---:|---:|---:|---:|\n")
        for kind, shape, dt, ours, tf, ref, ratio in rows:
            f.write(f"| {kind} | {shape} | {dt} | {ours:.3f} | {tf:.1f} | {ref:.3f} | {ratio:.2f} |\n")
        worst = max((r[-1] for r in rows), default=float("nan"))
        f.write(f"\nworst ratio {worst:.2f} over {len(rows)} rows (target ≤ 1.0)\n")


if __name__ == "__main__":
    main()
