"""diffusers' StableDiffusionPipeline on a folder with the settings of `ldm-engine sample
--timings`, printing the same `timings:` line (torch CPU, 2 threads by default).

Usage: python tools/torch_bench/txt2img.py FOLDER [--steps 20] [--size 512] [--sampler euler] [--threads 2]
"""
import argparse
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="a photograph of an astronaut riding a horse")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import diffusers
    from diffusers import StableDiffusionPipeline

    start = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(a.folder, torch_dtype=torch.float32)
    pipe.scheduler = diffusers.EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    calls = []
    unet_forward = pipe.unet.forward

    def timed(*args, **kw):
        t = time.perf_counter()
        out = unet_forward(*args, **kw)
        calls.append(time.perf_counter() - t)
        return out

    pipe.unet.forward = timed
    with torch.no_grad():
        t0 = time.perf_counter()
        pe, ne = pipe.encode_prompt(a.prompt, "cpu", 1, True, "")
        text_ms = (time.perf_counter() - t0) * 1e3
        lat = pipe(prompt_embeds=pe, negative_prompt_embeds=ne, height=a.size, width=a.size, num_inference_steps=a.steps,
                   guidance_scale=7.5, generator=torch.Generator().manual_seed(0), output_type="latent").images
        t2 = time.perf_counter()
        pipe.vae.decode(lat / pipe.vae.config.scaling_factor)
        vae_ms = (time.perf_counter() - t2) * 1e3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, diffusers {diffusers.__version__}")
    print(f"timings: text_encode_ms={text_ms:.1f} unet_ms_per_step={1e3 * sum(calls) / len(calls):.1f} "
          f"vae_decode_ms={vae_ms:.1f} total_ms={(time.perf_counter() - start) * 1e3:.1f}")


if __name__ == "__main__":
    main()
