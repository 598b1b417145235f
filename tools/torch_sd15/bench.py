"""PyTorch's side of the end-to-end Stable Diffusion comparison (issue: SD-size sampling on the GPU),
and the folder both sides load. Plain torch only (tools/torch_sd15/model.py), so it runs on the GPU
machines, which have PyTorch but no diffusers and no network.

    python tools/torch_sd15/bench.py make FOLDER [--dtype f16]
        An SD1.5-sized diffusers folder with random weights (seed 0, torch's default init) from the
        configs in tools/torch_sd15/sd15_config/ and the CLIP tokenizer in weights/clip_tokenizer/:
        what `ldm-engine sample --model FOLDER` and `run` below both load.
    python tools/torch_sd15/bench.py run FOLDER --out DIR [--device cuda] [--dtype f16] [--size 512]
                                     [--steps 50] [--cfg 7.5] [--reps 3]
        Text encode (prompt + empty negative) → DDIM (diffusers' DDIMScheduler from SD1.5's scheduler
        config: leading spacing, steps_offset 1, set_alpha_to_one False, eta 0) with classifier-free
        guidance (UNet batch 2) → VAE decode, SDPA attention, cuDNN conv, channels_last. One warm-up
        run, then `reps` timed runs (the median is printed); per-stage times synchronise the device.
        Writes DIR/noise.safetensors (the initial latents, for `ldm-engine sample --init-noise`),
        DIR/latents_torch.safetensors (the final latents) and prints one `timings:` line in the
        format of `ldm-engine sample --timings`, plus peak GPU memory.
    python tools/torch_sd15/bench.py compare A.safetensors B.safetensors
        Relative difference of two `latents` files (torch's vs the engine's --save-latents).
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import model as sd  # noqa: E402
import safetensors_stdlib  # noqa: E402

ROOT = os.path.join(HERE, "..", "..")
# "a photograph of an astronaut riding a horse" in CLIP's BPE (the engine's tokenizer gives the
# same ids, tests/clip_tokenizer.rs); SD pads with <|endoftext|> (49407) to 77.
PROMPT = "a photograph of an astronaut riding a horse"
PROMPT_IDS = [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
EMPTY_IDS = [49406, 49407]
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
ST_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def save_safetensors(path, tensors, metadata=None):
    """torch tensors to safetensors without the safetensors package (the GPU machines may not have it)."""
    raw = lambda t: t.view(torch.uint8).numpy().tobytes() if t.numel() else b""
    cpu = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    safetensors_stdlib.write(path, {name: (ST_DTYPES[t.dtype], t.shape, raw(t)) for name, t in cpu.items()}, metadata)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    inv = {v: k for k, v in ST_DTYPES.items()}
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        a, b = e["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=inv[e["dtype"]]).reshape(e["shape"]) if b > a else torch.zeros(e["shape"], dtype=inv[e["dtype"]])
    return out


def config(folder, component, name="config.json"):
    return json.load(open(os.path.join(folder, component, name)))


def modules(folder):
    return {"unet": sd.UNet(config(folder, "unet")), "vae": sd.AutoencoderKL(config(folder, "vae")), "text_encoder": sd.ClipTextModel(config(folder, "text_encoder"))}


FILES = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}


def make(folder, dtype):
    shutil.copytree(os.path.join(HERE, "sd15_config"), folder, dirs_exist_ok=True)
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(ROOT, "weights", "clip_tokenizer", f), os.path.join(folder, "tokenizer", f))
    torch.manual_seed(0)
    for name, m in modules(folder).items():
        sd_ = {k: v.to(DTYPES[dtype]) for k, v in m.state_dict().items()}
        save_safetensors(os.path.join(folder, name, FILES[name] + ".safetensors"), sd_, {"format": "pt", "made_by": "tools/torch_sd15/bench.py make (random, seed 0)"})
        print(f"{name}: {sum(v.numel() for v in sd_.values()):,} parameters")
    print("wrote", folder)


def ddim_schedule(sched, steps):
    betas = torch.linspace(sched["beta_start"] ** 0.5, sched["beta_end"] ** 0.5, sched["num_train_timesteps"], dtype=torch.float64) ** 2
    acp = torch.cumprod(1 - betas, 0)
    ratio = sched["num_train_timesteps"] // steps
    ts = [i * ratio + sched["steps_offset"] for i in range(steps)][::-1]
    final = 1.0 if sched.get("set_alpha_to_one", True) else acp[0].item()
    prev = lambda t: acp[t - ratio].item() if t - ratio >= 0 else final
    return [(t, acp[t].item(), prev(t)) for t in ts]


def run(a):
    dev, dt = torch.device(a.device), DTYPES[a.dtype]
    torch.backends.cudnn.benchmark = True
    folder = a.folder
    nets = modules(folder)
    for name, m in nets.items():
        m.load_state_dict(load_safetensors(os.path.join(folder, name, FILES[name] + ".safetensors")), strict=True)
        m.to(dev, dt).eval()
    unet, vae, clip = nets["unet"], nets["vae"], nets["text_encoder"]
    if dev.type == "cuda":
        unet.to(memory_format=torch.channels_last)
        vae.to(memory_format=torch.channels_last)
    sched = ddim_schedule(config(folder, "scheduler", "scheduler_config.json"), a.steps)
    pad = lambda ids: ids + [49407] * (77 - len(ids))
    ids = torch.tensor([pad(EMPTY_IDS), pad(PROMPT_IDS)], device=dev)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 4, a.size // 8, a.size // 8, generator=g)
    os.makedirs(a.out, exist_ok=True)
    save_safetensors(os.path.join(a.out, "noise.safetensors"), {"noise": noise}, {"prompt": PROMPT})
    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)

    @torch.inference_mode()
    def once():
        t0 = time.perf_counter()
        ctx = clip(ids)
        sync()
        t1 = time.perf_counter()
        x = noise.to(dev)  # f32 latents, as the engine keeps them
        for t, a_t, a_prev in sched:
            x_in = torch.cat([x, x]).to(dt)
            if dev.type == "cuda":
                x_in = x_in.contiguous(memory_format=torch.channels_last)
            eps_u, eps_c = unet(x_in, torch.tensor([t, t], device=dev), ctx).float().chunk(2)
            eps = eps_u + a.cfg * (eps_c - eps_u)
            x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
            x = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        sync()
        t2 = time.perf_counter()
        z = (x / config(folder, "vae").get("scaling_factor", 0.18215)).to(dt)
        img = vae.decode(z.contiguous(memory_format=torch.channels_last) if dev.type == "cuda" else z).float()
        sync()
        t3 = time.perf_counter()
        return x, img, (t1 - t0, (t2 - t1) / len(sched), t3 - t2, t3 - t0)

    once()  # warm-up: cuDNN autotuning, allocator
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runs = [once() for _ in range(a.reps)]
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
    # what the caching allocator held from the driver (the engine's peak_gpu_held_mib is closer to this)
    reserved = torch.cuda.max_memory_reserved() / 2**20 if dev.type == "cuda" else float("nan")
    x = runs[-1][0]
    save_safetensors(os.path.join(a.out, "latents_torch.safetensors"), {"latents": x.float()})
    med = [statistics.median(r[2][i] for r in runs) for i in range(4)]
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}, {a.dtype}, {a.size}x{a.size}, {a.steps} DDIM steps, cfg {a.cfg}, median of {a.reps}")
    print(f"timings: text_encode_ms={med[0] * 1e3:.1f} unet_ms_per_step={med[1] * 1e3:.1f} vae_decode_ms={med[2] * 1e3:.1f} total_ms={med[3] * 1e3:.1f}")
    print(f"peak_gpu_memory_mib={peak:.0f} peak_gpu_reserved_mib={reserved:.0f}")


def compare(pa, pb):
    a, b = load_safetensors(pa)["latents"].double(), load_safetensors(pb)["latents"].double()
    rel = ((a - b).norm() / b.norm()).item()
    print(f"latents: relative L2 difference {rel:.3e}, max |diff| {(a - b).abs().max().item():.3e} (max |b| {b.abs().max().item():.3f})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("folder")
    m.add_argument("--dtype", default="f16", choices=DTYPES)
    r = sub.add_parser("run")
    r.add_argument("folder")
    r.add_argument("--out", required=True)
    r.add_argument("--device", default="cuda")
    r.add_argument("--dtype", default="f16", choices=DTYPES)
    r.add_argument("--size", type=int, default=512)
    r.add_argument("--steps", type=int, default=50)
    r.add_argument("--cfg", type=float, default=7.5)
    r.add_argument("--reps", type=int, default=3)
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.folder, a.dtype)
    elif a.cmd == "run":
        run(a)
    else:
        compare(a.a, a.b)


if __name__ == "__main__":
    main()
