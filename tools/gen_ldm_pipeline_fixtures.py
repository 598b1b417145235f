"""The paper's unconditional and class-conditional sampling, as references for src/pipelines/ldm.rs:
the CompVis UNetModel / Decoder with the weights of the CompVis fixtures
(tests/fixtures/{unet_ldm_uncond,unet_ldm_cin,vq_noattn}.safetensors), stepped by diffusers'
DDIMScheduler with the LDM schedule (scaled_linear 0.0015–0.0195, leading, offset 1) — the
scheduler itself is at parity separately. Class-conditional runs classifier-free guidance with
the last class as the null class (cin256-v2's convention), conditional and null halves in one
batch. Writes tests/fixtures/pipelines/ldm_{uncond,class}.safetensors.

Run: cd tools && python gen_ldm_pipeline_fixtures.py
"""
import json
import os

import torch
from diffusers import DDIMScheduler
from safetensors.torch import load_file, save_file

import gen_compvis_fixtures as cv  # applies the 8-group norm patch the fixtures were made with
from ldm.modules.diffusionmodules.model import Decoder
from ldm.modules.diffusionmodules.openaimodel import UNetModel

FIX = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
LDM_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                     timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False)


def load(module, fixture, prefix=""):
    w = {k[len("weights." + prefix):]: v for k, v in load_file(os.path.join(FIX, f"{fixture}.safetensors")).items()
         if k.startswith("weights." + prefix) and not k.startswith("weights.cond.")}
    module.load_state_dict(w, strict=True)
    return module.eval()


def unet(name):
    kw = next(k for n, k, *_ in cv.UNETS if n == name)
    return load(UNetModel(image_size=8, **kw), name)


def ddim(model_fn, noise, steps):
    s = DDIMScheduler(**LDM_SCHEDULER)
    s.set_timesteps(steps)
    x = noise
    for t in s.timesteps:
        x = s.step(model_fn(x, t), t, x).prev_sample
    return x


def main():
    out_dir = os.path.join(FIX, "pipelines")
    with torch.no_grad():
        # unconditional, then the VQ decoder: quantize → post_quant_conv → decoder (CompVis decode_first_stage)
        u = unet("unet_ldm_uncond")
        noise = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(31))
        lat = ddim(lambda x, t: u(x, t.expand(x.shape[0]).float()), noise, 6)
        dd = dict(double_z=False, z_channels=3, resolution=16, in_channels=3, out_ch=3, ch=16, ch_mult=(1, 1),
                  num_res_blocks=1, attn_resolutions=[], dropout=0.0, attn_type="none")
        dec = load(Decoder(**dd), "vq_noattn", "decoder.")
        vq = load_file(os.path.join(FIX, "vq_noattn.safetensors"))
        book, pq_w, pq_b = vq["weights.quantize.embedding.weight"], vq["weights.post_quant_conv.weight"], vq["weights.post_quant_conv.bias"]
        z = lat.permute(0, 2, 3, 1).reshape(-1, 3)
        idx = (z.pow(2).sum(1, keepdim=True) + book.pow(2).sum(1) - 2 * z @ book.t()).argmin(1)
        zq = book[idx].view(2, 12, 12, 3).permute(0, 3, 1, 2)
        img = dec(torch.nn.functional.conv2d(zq, pq_w, pq_b))
        save_file({"noise": noise, "latents": lat.contiguous(), "image": img.contiguous()}, os.path.join(out_dir, "ldm_uncond.safetensors"),
                  metadata={"steps": "6", "scheduler_json": json.dumps(LDM_SCHEDULER)})

        # class-conditional with guidance 3: context = embedding(label)[:, None], null class = last
        c = unet("unet_ldm_cin")
        emb = load_file(os.path.join(FIX, "unet_ldm_cin.safetensors"))["weights.cond.embedding.weight"]
        labels, null, scale = torch.tensor([2, 7]), emb.shape[0] - 1, 3.0
        ctx = torch.cat([emb[torch.full((2,), null)], emb[labels]])[:, None]

        def guided(x, t):
            e = c(torch.cat([x, x]), t.expand(4).float(), context=[ctx] * 2)  # SD2 SpatialTransformer: one context per depth
            e_null, e_cond = e.chunk(2)
            return e_null + scale * (e_cond - e_null)

        noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(32))
        lat = ddim(guided, noise, 6)
        save_file({"noise": noise, "latents": lat.contiguous(), "labels": labels}, os.path.join(out_dir, "ldm_class.safetensors"),
                  metadata={"steps": "6", "guidance": str(scale), "scheduler_json": json.dumps(LDM_SCHEDULER)})
    print("wrote ldm_uncond, ldm_class")


if __name__ == "__main__":
    main()
