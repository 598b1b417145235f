"""torch CPU twin of `ldm-engine bench`: the same cases, names and work counts, so the two
outputs join line by line (tools/bench_vs_torch.sh does that).

torch.set_num_threads(2) matches the 2-core machines; the median of --reps runs after a warm-up.
"""
import argparse
import time

import torch
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--reps", type=int, default=5)
p.add_argument("--filter", default=None)
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
r = torch.randn

cases = []
for n in (1024, 2048):
    a, b = r(n, n), r(n, n)
    cases.append((f"gemm {n}x{n}x{n}", 2.0 * n**3, False, lambda a=a, b=b: a @ b))
for c, hw in ((320, 64), (640, 32), (1280, 16)):
    x, w = r(1, c, hw, hw), r(c, c, 3, 3)
    cases.append((f"conv3x3 1x{c}x{hw}x{hw}->{c}", 2.0 * c * c * 9 * hw * hw, False, lambda x=x, w=w: F.conv2d(x, w, padding=1)))
x, w = r(1, 320, 64, 64), r(320, 320, 1, 1)
cases.append(("conv1x1 1x320x64x64->320", 2.0 * 320 * 320 * 64 * 64, False, lambda x=x, w=w: F.conv2d(x, w)))
for lq, lk, d in ((4096, 4096, 40), (1024, 1024, 80), (4096, 77, 40)):
    q, k, v = r(1, 8, lq, d), r(1, 8, lk, d), r(1, 8, lk, d)
    cases.append((f"attention h8 {lq}x{lk} hd{d}", 4.0 * 8 * lq * lk * d, False,
                  lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v)))
# Whole models, random weights from the same configs (diffusers' SD1.5 UNet and VAE), built
# lazily so a --filter that skips them does not pay for them.
def _unet():
    from diffusers import UNet2DConditionModel
    m = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).eval()  # defaults are SD1.x's
    x, t, c = r(2, 4, 64, 64), torch.tensor([999, 999]), r(2, 77, 768)
    return lambda: m(x, t, encoder_hidden_states=c).sample

def _vae():
    from diffusers import AutoencoderKL
    m = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                      down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4).eval()
    z = r(1, 4, 64, 64)
    return lambda: m.decode(z).sample

class Lazy:
    def __init__(self, make):
        self.make, self.fn = make, None
    def __call__(self):
        self.fn = self.fn or self.make()
        return self.fn()

cases.append(("sd15 unet 64x64 b2", 1.0, "runs", Lazy(_unet)))
cases.append(("sd vae decode 512x512", 1.0, "runs", Lazy(_vae)))
x = r(1, 320, 64, 64)
cases.append(("group_norm 1x320x64x64 g32", 2.0 * 4.0 * x.numel(), True, lambda x=x: F.group_norm(x, 32, eps=1e-5)))

print(f"threads: {torch.get_num_threads()} (torch {torch.__version__})")
with torch.inference_mode():
    for name, work, is_bytes, fn in cases:
        if args.filter and args.filter not in name:
            continue
        fn()
        ts = []
        runs = min(max(args.reps, 1), 3) if is_bytes == "runs" else max(args.reps, 1)
        for _ in range(runs):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        ts.sort()
        med = ts[len(ts) // 2]
        if is_bytes == "runs":
            print(f"{name:<32} {med*1e3:>9.3f} ms  {1/med:>8.3f} runs/s")
        else:
            unit = "GB/s" if is_bytes else "GFLOP/s"
            print(f"{name:<32} {med*1e3:>9.3f} ms  {work/med/1e9:>8.1f} {unit}")
