"""torch CPU reference timings for benches/gemm.rs (same shapes, 2 threads, median of 10)."""
import time
import torch

torch.set_num_threads(2)
torch.manual_seed(0)
for m, k, n in [(1024, 1024, 1024), (2048, 2048, 2048), (4096, 320, 320), (4096, 320, 2560)]:
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    ts = []
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    ts.sort()
    print(f"torch gemm {m}x{k}x{n}: {ts[5]*1e3:.3f} ms, {2*m*n*k/ts[5]/1e9:.1f} GFLOP/s")
