"""AdamW + clip_grad_norm_ + linear warm-up, as torch runs them, for tests/train_optim.rs:
three parameters (one skipped on one step: no gradient), 5 steps of seeded gradients — some
steps clipped, some not — with LambdaLR's linear warm-up over 3 steps. Writes
tests/fixtures/train/adamw.safetensors: the initial parameters, each step's gradients, the total
norm clip_grad_norm_ returned and the parameters after each step.

Run: python tools/gen_optim_fixture.py   (torch: tools/setup_torch_ref.sh)
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "train", "adamw.safetensors")
SHAPES = {"a": (7, 5), "b": (13,), "c": (3, 4, 2)}
STEPS, WARMUP, BASE_LR, MAX_NORM, WD = 5, 3, 0.01, 1.0, 0.05


def main():
    g = torch.Generator().manual_seed(0)
    params = {k: torch.nn.Parameter(torch.randn(s, generator=g)) for k, s in SHAPES.items()}
    out = {f"init.{k}": p.detach().clone() for k, p in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=BASE_LR, weight_decay=WD)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / WARMUP))
    norms = []
    for step in range(STEPS):
        opt.zero_grad(set_to_none=True)
        scale = [0.1, 3.0, 0.1, 5.0, 0.2][step]  # steps 1, 3 and 4 exceed MAX_NORM and are clipped
        for k, p in params.items():
            if step == 2 and k == "c":
                continue  # no gradient: AdamW leaves it (and its step count) alone
            p.grad = torch.randn(p.shape, generator=g) * scale
            out[f"grad{step}.{k}"] = p.grad.clone()
        norms.append(torch.nn.utils.clip_grad_norm_(params.values(), MAX_NORM).item())
        opt.step()
        sched.step()
        for k, p in params.items():
            out[f"after{step}.{k}"] = p.detach().clone()
    out["norms"] = torch.tensor(norms, dtype=torch.float32)
    meta = dict(steps=str(STEPS), warmup=str(WARMUP), base_lr=str(BASE_LR), max_norm=str(MAX_NORM), weight_decay=str(WD))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_file(out, OUT, metadata=meta)
    print("norms", norms, os.path.getsize(OUT), "bytes")


if __name__ == "__main__":
    main()
