"""tests/fixtures/samplers/{ddim,ddpm,plms}_*.safetensors: diffusers' DDIMScheduler, DDPMScheduler
and PNDMScheduler (skip_prk_steps, i.e. PLMS) run on the analytic stand-in model of
sampler_fixture_common, for tests/sampler_ddim.rs.

Each case names the scheduler config the way a scheduler_config.json would; the stochastic ones
(DDPM, DDIM with eta > 0) record every randn_tensor draw so the Rust side replays the same noise.
Those use a smaller latent (still batch 2, odd sizes) to keep the fixtures a few KB.

Run: cd tools && /opt/torchref/bin/python gen_sampler_fixtures_ddim.py
"""
import torch
from diffusers import DDIMScheduler, DDPMScheduler, PNDMScheduler
from diffusers.schedulers import scheduling_ddim, scheduling_ddpm

from sampler_fixture_common import initial_noise, recorded_noise, run, save

SD15 = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            timestep_spacing="leading", steps_offset=1, set_alpha_to_one=False, clip_sample=False)
LDM = dict(SD15, beta_start=0.0015, beta_end=0.0195)  # CompVis LDM "linear" 0.0015–0.0195
DEFAULTS = dict(num_train_timesteps=1000)  # diffusers' class defaults: linear 1e-4–0.02, clip on
SMALL = (2, 3, 3, 5)  # stochastic cases: one draw per step
TINY = (2, 1, 3, 3)   # the 50-step DDPM

# name, config, steps, eta, latent shape
DDIM = [
    ("ddim_sd15_20", SD15, 20, 0.0, None),
    ("ddim_sd15_eta1_6", SD15, 6, 1.0, SMALL),
    ("ddim_v_trailing_15", dict(SD15, prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=0), 15, 0.0, None),
    ("ddim_linspace_20", dict(SD15, timestep_spacing="linspace", steps_offset=0), 20, 0.0, None),
    ("ddim_linspace_eta05_7", dict(SD15, timestep_spacing="linspace", steps_offset=0), 7, 0.5, SMALL),
    ("ddim_ldm_50", LDM, 50, 0.0, None),
    ("ddim_clip_10", dict(DEFAULTS, clip_sample=True, set_alpha_to_one=True), 10, 0.0, None),
    ("ddim_sample_clip_range2_10", dict(DEFAULTS, prediction_type="sample", clip_sample=True, clip_sample_range=2.0), 10, 0.0, None),
]
DDPM = [
    ("ddpm_sd15_10", dict(SD15, clip_sample=False), 10, SMALL),
    ("ddpm_default_50", DEFAULTS, 50, TINY),
    ("ddpm_v_trailing_10", dict(SD15, prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=0), 10, SMALL),
    ("ddpm_linspace_clip_10", dict(DEFAULTS, timestep_spacing="linspace"), 10, SMALL),
    ("ddpm_sample_ldm_7", dict(LDM, prediction_type="sample"), 7, SMALL),
]
PLMS_SD15 = dict(SD15, skip_prk_steps=True)
PLMS = [
    ("plms_sd15_5", PLMS_SD15, 5),
    ("plms_sd15_20", PLMS_SD15, 20),
    ("plms_sd15_1", PLMS_SD15, 1),
    ("plms_sd15_2", PLMS_SD15, 2),
    ("plms_v_20", dict(PLMS_SD15, prediction_type="v_prediction"), 20),
    ("plms_v_trailing_5", dict(PLMS_SD15, prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=0), 5),
    ("plms_linspace_ldm_20", dict(LDM, skip_prk_steps=True, timestep_spacing="linspace", steps_offset=0), 20),
]


def main():
    for seed, (name, cfg, steps, eta, shape) in enumerate(DDIM):
        s = DDIMScheduler(**cfg)
        noise = initial_noise(100 + seed, shape or (2, 4, 5, 7))
        torch.manual_seed(1000 + seed)
        with recorded_noise(scheduling_ddim) as draws:
            latents, calls = run(s, steps, noise, eta=eta)
        assert (len(draws) > 0) == (eta > 0), name
        save(name, s, "ddim", steps, noise, latents, calls, draws, eta=eta)
    for seed, (name, cfg, steps, shape) in enumerate(DDPM):
        s = DDPMScheduler(**{k: v for k, v in cfg.items() if k != "set_alpha_to_one"})
        noise = initial_noise(200 + seed, shape)
        torch.manual_seed(2000 + seed)
        with recorded_noise(scheduling_ddpm) as draws:
            latents, calls = run(s, steps, noise)
        save(name, s, "ddpm", steps, noise, latents, calls, draws)
    for seed, (name, cfg, steps) in enumerate(PLMS):
        s = PNDMScheduler(**{k: v for k, v in cfg.items() if k != "clip_sample"})
        noise = initial_noise(300 + seed)
        latents, calls = run(s, steps, noise)
        save(name, s, "plms", steps, noise, latents, calls)


if __name__ == "__main__":
    main()
