"""Text-to-image pipeline parity fixtures: the tiny SD folder (tests/fixtures/tiny_sd, made by
gen_fixtures.py) gets a tokenizer/ and a scheduler/ like a real SD1.x folder, and diffusers'
StableDiffusionPipeline runs on it with fixed initial latents for several schedulers, writing
the final latents (output_type="latent") to tests/fixtures/pipelines/txt2img_<name>.safetensors.

The tokenizer is CLIP's real BPE cut to 1,000 ids (the text model's vocabulary): the 512 byte
tokens, the first 486 merges, then <|startoftext|> = 998 and <|endoftext|> = 999.

Run:  python tools/gen_pipeline_fixtures.py [--odd-only]   (torch + diffusers: tools/setup_torch_ref.sh)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..")
FOLDER = os.path.join(ROOT, "tests", "fixtures", "tiny_sd")
OUT = os.path.join(ROOT, "tests", "fixtures", "pipelines")
N_MERGES = 486

SD15_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      steps_offset=1, set_alpha_to_one=False, clip_sample=False, skip_prk_steps=True)


def write_tokenizer():
    """vocab.json + merges.txt + tokenizer_config.json, as real SD1.x folders ship them."""
    from transformers import CLIPTokenizer

    src = os.path.join(ROOT, "weights", "clip_tokenizer")
    vocab = json.load(open(os.path.join(src, "vocab.json"), encoding="utf-8"))
    merges = open(os.path.join(src, "merges.txt"), encoding="utf-8").read().split("\n")[1:N_MERGES + 1]
    small = {t: i for t, i in vocab.items() if i < 512 + N_MERGES}
    small["<|startoftext|>"], small["<|endoftext|>"] = 998, 999
    dst = os.path.join(FOLDER, "tokenizer")
    os.makedirs(dst, exist_ok=True)
    json.dump(small, open(os.path.join(dst, "vocab.json"), "w", encoding="utf-8"), ensure_ascii=False)
    open(os.path.join(dst, "merges.txt"), "w", encoding="utf-8").write("#version: 0.2\n" + "\n".join(merges) + "\n")
    json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
               "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "do_lower_case": True}, open(os.path.join(dst, "tokenizer_config.json"), "w"), indent=2)
    tok = CLIPTokenizer.from_pretrained(dst)
    assert len(tok) == 1000, len(tok)
    print("tokenizer:", tok(PROMPTS[0]).input_ids)


def write_scheduler_and_index():
    from diffusers import PNDMScheduler

    PNDMScheduler.from_config(SD15_SCHEDULER).save_pretrained(os.path.join(FOLDER, "scheduler"))
    index = json.load(open(os.path.join(FOLDER, "model_index.json")))
    index.update(tokenizer=["transformers", "CLIPTokenizer"], scheduler=["diffusers", "PNDMScheduler"],
                 safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    json.dump(index, open(os.path.join(FOLDER, "model_index.json"), "w"), indent=2)


# (fixture name, engine sampler, diffusers scheduler class, config overrides, steps)
CASES = [
    ("plms", "plms", "PNDMScheduler", {}, 6),
    ("ddim", "ddim", "DDIMScheduler", {}, 6),
    ("euler", "euler", "EulerDiscreteScheduler", {}, 6),
    ("heun", "heun", "HeunDiscreteScheduler", {}, 4),
    ("dpmpp2m", "dpm++2m", "DPMSolverMultistepScheduler", {}, 6),
    ("ddim_vpred_trailing", "ddim", "DDIMScheduler", dict(prediction_type="v_prediction", timestep_spacing="trailing"), 5),
    ("euler_karras", "euler", "EulerDiscreteScheduler", dict(use_karras_sigmas=True), 6),
]
PROMPTS = ["a photograph of an astronaut riding a horse", "a red cube, on a table!"]
NEGATIVE = "blurry, low quality"
HEIGHT, WIDTH, GUIDANCE = 40, 56, 7.5  # non-square; the tiny VAE downsamples 2×: latents 20×28


def finite(config):
    """The config without non-finite numbers (DPM's lambda_min_clipped = -inf), which JSON cannot
    carry; the engine's default for such keys is the same value."""
    return {k: v for k, v in dict(config).items() if not (isinstance(v, float) and v != v or v in (float("inf"), float("-inf")))}


def main():
    import diffusers
    from diffusers import StableDiffusionPipeline

    os.makedirs(OUT, exist_ok=True)
    write_tokenizer()
    write_scheduler_and_index()
    pipe = StableDiffusionPipeline.from_pretrained(FOLDER, variant="fp16", torch_dtype=torch.float32)
    folder_scheduler = dict(pipe.scheduler.config)  # what a user swapping samplers starts from
    pipe.set_progress_bar_config(disable=True)
    f = pipe.vae_scale_factor  # diffusers does not check the shape of given latents: give the right one
    noise = torch.randn(2, 4, HEIGHT // f, WIDTH // f, generator=torch.Generator().manual_seed(2024))
    for name, sampler, cls, overrides, steps in CASES:
        pipe.scheduler = getattr(diffusers, cls).from_config(dict(SD15_SCHEDULER, **overrides))
        with torch.no_grad():
            latents = pipe(PROMPTS, negative_prompt=[NEGATIVE] * 2, height=HEIGHT, width=WIDTH, num_inference_steps=steps,
                           guidance_scale=GUIDANCE, latents=noise.clone(), output_type="latent").images
        meta = dict(sampler=sampler, steps=str(steps), guidance=str(GUIDANCE), height=str(HEIGHT), width=str(WIDTH),
                    prompts=json.dumps(PROMPTS), negative=NEGATIVE, scheduler_json=json.dumps(finite(pipe.scheduler.config)))
        path = os.path.join(OUT, f"txt2img_{name}.safetensors")
        save_file({"noise": noise, "latents": latents.contiguous()}, path, metadata=meta)
        print(f"{name}: {os.path.getsize(path)} bytes, |latents| max {latents.abs().max():.3f}")

    # what `ldm-engine sample --batch 2 --init-noise` runs: one prompt twice, Euler (the CLI default)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(folder_scheduler)
    with torch.no_grad():
        latents = pipe(PROMPTS[1], negative_prompt=NEGATIVE, num_images_per_prompt=2, height=HEIGHT, width=WIDTH,
                       num_inference_steps=5, guidance_scale=GUIDANCE, latents=noise.clone(), output_type="latent").images
    path = os.path.join(OUT, "txt2img_cli_euler.safetensors")
    meta = dict(prompt=PROMPTS[1], negative=NEGATIVE, sampler="euler", steps="5", guidance=str(GUIDANCE),
                height=str(HEIGHT), width=str(WIDTH))
    save_file({"noise": noise, "latents": latents.contiguous()}, path, metadata=meta)
    print(f"cli_euler: {os.path.getsize(path)} bytes")


# (name, engine sampler, scheduler class): image-to-image at strength 0.6 of 10 steps (6 run)
IMG2IMG = [("ddim", "ddim", "DDIMScheduler"), ("plms", "plms", "PNDMScheduler"), ("euler", "euler", "EulerDiscreteScheduler"),
           ("heun", "heun", "HeunDiscreteScheduler"), ("dpmpp2m", "dpm++2m", "DPMSolverMultistepScheduler")]


def img2img():
    """StableDiffusionImg2ImgPipeline on the same folder. Its two random draws (the VAE posterior
    sample, then the noise added at the start step) come from one seeded generator; they are
    re-drawn here with the same seed and stored as draw_0, draw_1 for the engine to replay."""
    import diffusers
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(FOLDER, variant="fp16", torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    folder_scheduler = dict(pipe.scheduler.config)
    h, w = 24, 32  # smaller than txt2img's: the image is stored too
    image = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(5)) * 2 - 1
    f = pipe.vae_scale_factor
    g = torch.Generator().manual_seed(77)
    draws = [torch.randn(2, 4, h // f, w // f, generator=g) for _ in range(2)]
    for name, sampler, cls in IMG2IMG:
        pipe.scheduler = getattr(diffusers, cls).from_config(folder_scheduler)
        with torch.no_grad():
            latents = pipe(PROMPTS, image=image, strength=0.6, negative_prompt=[NEGATIVE] * 2, num_inference_steps=10,
                           guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(77), output_type="latent").images
        meta = dict(sampler=sampler, steps="10", strength="0.6", guidance=str(GUIDANCE), height=str(h), width=str(w),
                    prompts=json.dumps(PROMPTS), negative=NEGATIVE, scheduler_json=json.dumps(finite(pipe.scheduler.config)))
        path = os.path.join(OUT, f"img2img_{name}.safetensors")
        save_file({"image": image, "draw_0": draws[0], "draw_1": draws[1], "latents": latents.contiguous()}, path, metadata=meta)
        print(f"img2img {name}: {os.path.getsize(path)} bytes")


def odd_levels():
    """One more text-to-image case at 36x52 pixels: latents 18x26, whose next UNet level is 9x13
    (odd), with DPM++ 2M. Written on its own so the other fixtures stay byte-identical.
    StableDiffusionPipeline insists on multiples of 8 pixels (with the tiny factor-2 VAE no level
    could then be odd) but takes given latents as they are: it is asked for 40x56 and handed
    18x26 latents, so it runs exactly a 36x52 request."""
    import diffusers
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(FOLDER, variant="fp16", torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = diffusers.DPMSolverMultistepScheduler.from_config(SD15_SCHEDULER)
    h, w, f = 36, 52, pipe.vae_scale_factor
    noise = torch.randn(2, 4, h // f, w // f, generator=torch.Generator().manual_seed(2025))
    with torch.no_grad():
        latents = pipe(PROMPTS, negative_prompt=[NEGATIVE] * 2, height=40, width=56, num_inference_steps=6,
                       guidance_scale=GUIDANCE, latents=noise.clone(), output_type="latent").images
    assert latents.shape == (2, 4, h // f, w // f), latents.shape
    meta = dict(sampler="dpm++2m", steps="6", guidance=str(GUIDANCE), height=str(h), width=str(w),
                prompts=json.dumps(PROMPTS), negative=NEGATIVE, scheduler_json=json.dumps(finite(pipe.scheduler.config)))
    path = os.path.join(OUT, "txt2img_dpmpp2m_odd.safetensors")
    save_file({"noise": noise, "latents": latents.contiguous()}, path, metadata=meta)
    print(f"dpmpp2m_odd: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    torch.set_num_threads(2)
    if "--odd-only" in sys.argv:
        odd_levels()
    else:
        main()
        img2img()
        odd_levels()
