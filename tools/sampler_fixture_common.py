"""Shared by the sampler fixture generators (tools/gen_sampler_fixtures_*.py): an analytic stand-in
for the UNet that the Rust tests compute identically (tests/common/sampler.rs), the denoising loop
exactly as diffusers' pipelines run it, and the fixture writer.

The model is out = 0.1·x + 0.5·cos(0.01·t)·tanh(x): smooth, timestep-dependent and nonlinear, so
a wrong timestep, scaling or update shows in the final latents. Parity then tests the scheduler
math step for step without a UNet in the loop.
"""
import contextlib
import json
import math
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "samplers")


def model(x, t):
    return x * 0.1 + torch.tanh(x) * (0.5 * math.cos(0.01 * float(t)))


@contextlib.contextmanager
def recorded_noise(module):
    """Records every randn_tensor draw the scheduler module makes (stochastic samplers), so the
    Rust side can replay the same noise."""
    draws = []
    original = module.randn_tensor

    def recording(*args, **kwargs):
        t = original(*args, **kwargs)
        draws.append(t.clone())
        return t

    module.randn_tensor = recording
    try:
        yield draws
    finally:
        module.randn_tensor = original


def run(scheduler, steps, noise, **step_kwargs):
    """diffusers' loop: latents = noise·init_noise_sigma; per timestep scale_model_input → model →
    step. Returns the final latents and the timesteps the model was called with."""
    scheduler.set_timesteps(steps)
    latents = noise * scheduler.init_noise_sigma
    calls = []
    for t in scheduler.timesteps:
        inp = scheduler.scale_model_input(latents, t)
        calls.append(float(t))
        latents = scheduler.step(model(inp, t), t, latents, **step_kwargs).prev_sample
    return latents, calls


def save(name, scheduler, sampler, steps, noise, latents, calls, draws=(), eta=0.0):
    os.makedirs(OUT, exist_ok=True)
    tensors = {"noise": noise, "latents": latents, "calls": torch.tensor(calls, dtype=torch.float64),
               "alphas_cumprod": scheduler.alphas_cumprod.to(torch.float32)}
    tensors.update({f"draw_{i}": d for i, d in enumerate(draws)})
    meta = {"config_json": json.dumps(dict(scheduler.config)), "sampler": sampler, "steps": str(steps),
            "eta": str(eta), "draws": str(len(draws)), "scheduler_class": type(scheduler).__name__}
    path = os.path.join(OUT, f"{name}.safetensors")
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata=meta)
    print(f"{name}: {os.path.getsize(path)} bytes, {len(calls)} model calls")


def initial_noise(seed, shape=(2, 4, 5, 7)):
    """Batch 2, odd latent sizes."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
