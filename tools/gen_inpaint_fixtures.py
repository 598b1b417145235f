"""Inpainting parity fixtures: diffusers' StableDiffusionInpaintPipeline on the tiny SD folder
(tests/fixtures/tiny_sd, gen_fixtures.py + gen_pipeline_fixtures.py), in both of its modes:

- mask blending with the folder's ordinary 4-channel UNet, for every deterministic scheduler;
- a 9-channel inpainting UNet (the tiny UNet's config with in_channels = 9, random weights),
  saved to tests/fixtures/tiny_sd_inpaint/unet (with a model_index.json naming the pipeline; the
  tests assemble the rest of the folder from tiny_sd's components).

Sizes are non-square and the latent levels get odd (36x52 pixels: latents 18x26, then 9x13), the
batch is 2 with one prompt each and a negative prompt, guidance 7.5. The masks are two different
rectangles plus scattered pixels with values on both sides of 0.5 (they test the binarisation).

The pipeline's random draws (VAE posterior samples, initial noise) come from one seeded
generator; they are re-drawn here with the same seed, in the same order, and stored as draw_<i>
for the engine to replay. Writes tests/fixtures/pipelines/inpaint_inputs.safetensors (image, mask,
draws, prompts) and inpaint_<case>.safetensors (final latents, sampler settings).

Run:  python tools/gen_inpaint_fixtures.py   (torch + diffusers: tools/setup_torch_ref.sh)
"""
import json
import os

import torch
from safetensors.torch import save_file

from gen_pipeline_fixtures import FOLDER, OUT, PROMPTS, NEGATIVE, GUIDANCE, finite

ROOT = os.path.join(os.path.dirname(__file__), "..")
INPAINT_FOLDER = os.path.join(ROOT, "tests", "fixtures", "tiny_sd_inpaint")
H, W, SEED = 36, 52, 91

# (fixture name, engine sampler, diffusers scheduler class, steps, strength, 9-channel UNet)
CASES = [
    ("blend_ddim", "ddim", "DDIMScheduler", 6, 1.0, False),
    ("blend_plms", "plms", "PNDMScheduler", 6, 1.0, False),
    ("blend_euler", "euler", "EulerDiscreteScheduler", 6, 1.0, False),
    ("blend_heun", "heun", "HeunDiscreteScheduler", 4, 1.0, False),
    ("blend_dpmpp2m", "dpm++2m", "DPMSolverMultistepScheduler", 6, 1.0, False),
    ("blend_euler_strength", "euler", "EulerDiscreteScheduler", 10, 0.7, False),
    ("unet9_ddim", "ddim", "DDIMScheduler", 6, 1.0, True),
    ("unet9_euler", "euler", "EulerDiscreteScheduler", 6, 1.0, True),
    ("unet9_dpmpp2m_strength", "dpm++2m", "DPMSolverMultistepScheduler", 10, 0.6, True),
]


def inpainting_unet():
    """The tiny UNet with 9 input channels; weights seeded, then scaled up a little so the extra
    channels matter (the default init makes conv_in small)."""
    from diffusers import UNet2DConditionModel

    cfg = dict(UNet2DConditionModel.load_config(os.path.join(FOLDER, "unet")))
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["in_channels"] = 9
    torch.manual_seed(9)
    unet = UNet2DConditionModel(**cfg).eval()
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    # stored in f16 like the tiny folder's other components, run in f32 from those values
    unet.half().save_pretrained(os.path.join(INPAINT_FOLDER, "unet"), safe_serialization=True, variant="fp16")
    unet.float()
    index = dict(json.load(open(os.path.join(FOLDER, "model_index.json"))), _class_name="StableDiffusionInpaintPipeline")
    json.dump(index, open(os.path.join(INPAINT_FOLDER, "model_index.json"), "w"), indent=2)
    return unet


def masks():
    m = torch.zeros(2, 1, H, W)
    m[0, :, 6:26, 10:40] = 1.0
    m[1, :, 18:36, 0:20] = 0.8  # ≥ 0.5: repainted
    g = torch.Generator().manual_seed(4)
    speckle = torch.rand(2, 1, H, W, generator=g)
    m = torch.where(speckle > 0.97, torch.full_like(m, 0.55), m)  # repainted
    m = torch.where(speckle < 0.03, torch.full_like(m, 0.45), m)  # kept
    return m


def main():
    import diffusers
    from diffusers import StableDiffusionInpaintPipeline

    os.makedirs(OUT, exist_ok=True)
    unet9 = inpainting_unet()
    image = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(5)) * 2 - 1
    mask = masks()
    for name, sampler, cls, steps, strength, nine in CASES:
        kw = dict(unet=unet9) if nine else {}
        pipe = StableDiffusionInpaintPipeline.from_pretrained(FOLDER, variant="fp16", torch_dtype=torch.float32, **kw)
        pipe.set_progress_bar_config(disable=True)
        pipe.scheduler = getattr(diffusers, cls).from_config(pipe.scheduler.config)
        f = pipe.vae_scale_factor
        with torch.no_grad():
            latents = pipe(PROMPTS, image=image, mask_image=mask, height=H, width=W, strength=strength,
                           negative_prompt=[NEGATIVE] * 2, num_inference_steps=steps, guidance_scale=GUIDANCE,
                           generator=torch.Generator().manual_seed(SEED), output_type="latent").images
        meta = dict(sampler=sampler, steps=str(steps), strength=str(strength), unet9=str(nine).lower(),
                    scheduler_json=json.dumps(finite(pipe.scheduler.config)))
        path = os.path.join(OUT, f"inpaint_{name}.safetensors")
        save_file({"latents": latents.contiguous()}, path, metadata=meta)
        print(f"inpaint {name}: {os.path.getsize(path)} bytes, |latents| max {latents.abs().max():.3f}")

    # the generator's first draws, the same for every case (one seed, one shape); the pipeline
    # takes them in order for the image posterior (blend mode, or strength < 1), the initial noise
    # and the masked-image posterior (always drawn; the blend mode never uses it)
    g = torch.Generator().manual_seed(SEED)
    draws = {f"draw_{i}": torch.randn(2, 4, H // f, W // f, generator=g) for i in range(3)}
    meta = dict(guidance=str(GUIDANCE), height=str(H), width=str(W), prompts=json.dumps(PROMPTS), negative=NEGATIVE)
    save_file({"image": image, "mask": mask, **draws}, os.path.join(OUT, "inpaint_inputs.safetensors"), metadata=meta)


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
