"""Reference timings for benches/conv.rs: torch CPU conv2d on the Stable Diffusion UNet shapes.

Run with the torch reference install, on the same machine and right before/after
`cargo bench --bench conv`, so both see the same load:
    /opt/torchref/bin/python tools/torch_bench/conv.py
Uses 2 threads (our CI/bench machine has 2 cores), warms up, reports the median of >= 10 runs.
"""
import statistics
import time

import torch

# (name, N, C_in, H, W, C_out, kernel, padding) — the same list as benches/conv.rs.
SHAPES = [
    ("conv3x3 1x320x64x64->320", 1, 320, 64, 64, 320, 3, 1),
    ("conv3x3 1x640x32x32->640", 1, 640, 32, 32, 640, 3, 1),
    ("conv3x3 1x1280x16x16->1280", 1, 1280, 16, 16, 1280, 3, 1),
    ("conv1x1 1x320x64x64->320", 1, 320, 64, 64, 320, 1, 0),
]


def median_ms(f, runs):
    for _ in range(3):
        f()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, mkldnn {torch.backends.mkldnn.is_available()}")
    with torch.no_grad():
        for name, n, ci, h, w, co, k, pad in SHAPES:
            x = torch.randn(n, ci, h, w)
            wt = torch.randn(co, ci, k, k) * 0.05
            b = torch.randn(co)
            f = lambda: torch.nn.functional.conv2d(x, wt, b, padding=pad)
            ms = median_ms(f, 15)
            flops = 2.0 * n * co * ci * k * k * h * w
            print(f"{name}: {ms:.2f} ms, {flops / ms / 1e6:.1f} GFLOP/s")
        # Training: dx and dw together, as benches/conv.rs times its two backward kernels.
        for name, n, ci, h, w, co, k, pad in SHAPES[:3]:
            x = torch.randn(n, ci, h, w)
            wt = torch.randn(co, ci, k, k) * 0.05
            dy = torch.randn(n, co, h, w)
            f = lambda: torch.ops.aten.convolution_backward(
                dy, x, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, [True, True, False]
            )
            ms = median_ms(f, 10)
            flops = 4.0 * n * co * ci * k * k * h * w
            print(f"{name} backward (dx+dw): {ms:.2f} ms, {flops / ms / 1e6:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
