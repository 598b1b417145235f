"""Gradient parity for stage-2 training, in the llm.c spirit: 3 steps of a tiny class-conditional
latent diffusion model — CompVis' UNetModel with a spatial transformer cross-attending to a
ClassEmbedder (nn.Embedding with one extra row, the null class) — trained as CompVis
`LatentDiffusion.p_losses` does (parameterization eps, l_simple_weight 1, original_elbo_weight 0,
no learned log-variance):

    z    = scale_factor · (mean + exp(logvar / 2) · n)          (DiagonalGaussianDistribution.sample)
    x_t  = √ᾱ_t · z + √(1 − ᾱ_t) · ε                            (q_sample; ᾱ from make_beta_schedule("linear"))
    c    = embedder(label, or the null class where dropped)[:, None]
    loss = mean((ε − unet(x_t, t, context=c))²)

with torch.optim.AdamW (the `configure_optimizers` default: β 0.9/0.999, weight decay 0.01) over
the UNet and the embedder, a linear warm-up, clip_grad_norm_ and LitEma. The random draws (t, ε,
n, the dropout mask) are made here and stored, so the engine replays them.

Writes tests/fixtures/train/ldm_steps.safetensors: the initial weights (`init.` + CompVis single-file
names), per step the batch (`step{i}.mean|logvar|labels`), the draws (`step{i}.t|eps|noise|drop`),
the loss (`step{i}.loss`), every parameter gradient (`step{i}.grad.<name>`), and after the 3 steps
the weights (`final.<name>`) and the EMA weights (`ema.<name>`); metadata: the engine config.

A second fixture, ldm_steps_v.safetensors, runs the same 3 steps with parameterization "v": the
target is v = √ᾱ_t·ε − √(1−ᾱ_t)·z (CompVis `get_v`).

Run: cd tools && python gen_ldm_train_fixture.py   (torch, the sdkit `ldm` package)
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import gen_compvis_fixtures as cv  # noqa: E402  (applies the 8-group norm patch)
from gen_fixtures import perturb  # noqa: E402
from ldm.modules.diffusionmodules.openaimodel import UNetModel  # noqa: E402
from ldm.modules.diffusionmodules.util import make_beta_schedule  # noqa: E402
from ldm.modules.ema import LitEma  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "train", "ldm_steps.safetensors")
N_CLASSES, EMBED, B, C, S, STEPS = 3, 16, 3, 3, 8, 3
LR, WARMUP, CLIP, EMA_DECAY, DROP, SCALE = 2e-3, 2, 0.5, 0.9, 0.5, 0.7
LINEAR_START, LINEAR_END, T = 0.0015, 0.0195, 1000

CONFIG = {
    "unet": {"model_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1, "attention_levels": [1],
             "num_head_channels": 8, "groups": cv.GROUPS},
    "cond": {"kind": "class", "n_classes": N_CLASSES, "embed_dim": EMBED, "drop_prob": DROP},
    "diffusion": {"linear_start": LINEAR_START, "linear_end": LINEAR_END, "timesteps": T, "parameterization": "eps",
                  "scale_factor": SCALE},
    "train": {"lr": LR, "batch_size": B, "steps": STEPS, "warmup_steps": WARMUP, "weight_decay": 0.01,
              "grad_clip": CLIP, "ema_decay": EMA_DECAY, "seed": 0},
}


class Model(torch.nn.Module):
    """The two trained modules under their single-file names."""

    def __init__(self):
        super().__init__()
        self.unet = UNetModel(image_size=S, in_channels=C, out_channels=C, model_channels=8, num_res_blocks=1,
                              attention_resolutions=[2], channel_mult=(1, 2), num_head_channels=8,
                              use_spatial_transformer=True, transformer_depth=1, context_dim=EMBED)
        self.embedding = torch.nn.Embedding(N_CLASSES + 1, EMBED)

    def named(self):
        out = {f"model.diffusion_model.{k}": v for k, v in self.unet.named_parameters()}
        out["cond_stage_model.embedding.weight"] = self.embedding.weight
        return out


def main(parameterization):
    torch.manual_seed(0)
    config = json.loads(json.dumps(CONFIG))
    config["diffusion"]["parameterization"] = parameterization
    out_path = OUT if parameterization == "eps" else OUT.replace(".safetensors", "_v.safetensors")
    model = perturb(Model(), 1)
    params = model.named()
    out = {f"init.{k}": v.detach().clone() for k, v in params.items()}
    # as LatentDiffusion.register_schedule: float64 numpy, square roots taken before the f32 cast
    ac = np.cumprod(1.0 - make_beta_schedule("linear", T, LINEAR_START, LINEAR_END))
    sqrt_ac = torch.tensor(np.sqrt(ac), dtype=torch.float32)
    sqrt_1m = torch.tensor(np.sqrt(1.0 - ac), dtype=torch.float32)
    opt = torch.optim.AdamW(list(params.values()), lr=LR)
    ema = LitEma(model, decay=EMA_DECAY)
    g = torch.Generator().manual_seed(2)
    for step in range(STEPS):
        mean = torch.randn(B, C, S, S, generator=g) * 2.0
        logvar = torch.rand(B, C, S, S, generator=g) * 2.0 - 3.0
        labels = torch.randint(0, N_CLASSES, (B,), generator=g)
        t = torch.randint(0, T, (B,), generator=g)
        eps = torch.randn(B, C, S, S, generator=g)
        noise = torch.randn(B, C, S, S, generator=g)
        drop = torch.tensor([True, False, step == 1])
        z = SCALE * (mean + torch.exp(0.5 * logvar) * noise)
        x_t = sqrt_ac[t].view(B, 1, 1, 1) * z + sqrt_1m[t].view(B, 1, 1, 1) * eps
        ctx = model.embedding(torch.where(drop, torch.full_like(labels, N_CLASSES), labels))[:, None]
        target = eps if parameterization == "eps" else sqrt_ac[t].view(B, 1, 1, 1) * eps - sqrt_1m[t].view(B, 1, 1, 1) * z
        loss = ((target - model.unet(x_t, t, context=ctx)) ** 2).mean()
        for pg in opt.param_groups:
            pg["lr"] = LR * min(1.0, (step + 1) / WARMUP)
        opt.zero_grad()
        loss.backward()
        pre = f"step{step}."
        out.update({pre + "mean": mean, pre + "logvar": logvar, pre + "labels": labels, pre + "t": t, pre + "eps": eps,
                    pre + "noise": noise, pre + "drop": drop.to(torch.uint8), pre + "loss": loss.detach().reshape(1)})
        out.update({f"{pre}grad.{k}": v.grad.detach().clone() for k, v in params.items()})
        torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP)
        opt.step()
        ema(model)
        print(f"step {step}: loss {loss.item():.6f}")
    out.update({f"final.{k}": v.detach().clone() for k, v in params.items()})
    ema_named = dict(ema.named_buffers())
    for k in params:
        module_key = ("unet." + k[len("model.diffusion_model."):]) if k.startswith("model.") else "embedding.weight"
        out[f"ema.{k}"] = ema_named[module_key.replace(".", "")].detach().clone()
    save_file({k: v.contiguous() for k, v in out.items()}, out_path, metadata={"config": json.dumps(config)})
    print(f"wrote {out_path}: {os.path.getsize(out_path)} bytes")


if __name__ == "__main__":
    main("eps")
    main("v")
