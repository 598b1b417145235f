"""tests/fixtures/samplers/{euler,euler_a,heun}_*.safetensors: diffusers' EulerDiscreteScheduler,
EulerAncestralDiscreteScheduler and HeunDiscreteScheduler run on the analytic stand-in model of
sampler_fixture_common, for tests/sampler_euler.rs.

The cases cover each timestep spacing (linspace gives fractional timesteps, hence interpolated
sigmas), Karras sigmas (fractional timesteps the model sees, from the log-sigma interpolation),
the three prediction types and Heun's doubled model calls. Euler ancestral draws fresh noise every
step (randn_tensor, recorded here so the Rust side replays it); those cases use a smaller latent
(still batch 2, odd sizes) to keep the fixtures a few KB.

Run: cd tools && /opt/torchref/bin/python gen_sampler_fixtures_euler.py
"""
import torch
from diffusers import EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler
from diffusers.schedulers import scheduling_euler_ancestral_discrete

from sampler_fixture_common import initial_noise, recorded_noise, run, save

SD15 = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
            timestep_spacing="leading", steps_offset=1)
LINSPACE = dict(SD15, timestep_spacing="linspace", steps_offset=0)
V_TRAILING = dict(SD15, prediction_type="v_prediction", timestep_spacing="trailing", steps_offset=0)
SMALL = (2, 2, 3, 5)  # ancestral cases: one draw per step

# name, scheduler class, engine sampler name, config, steps, latent shape (None: the default)
CASES = [
    ("euler_sd15_20", EulerDiscreteScheduler, "euler", SD15, 20, None),
    ("euler_karras_15", EulerDiscreteScheduler, "euler", dict(SD15, use_karras_sigmas=True), 15, None),
    ("euler_v_trailing_12", EulerDiscreteScheduler, "euler", V_TRAILING, 12, None),
    ("euler_linspace_12", EulerDiscreteScheduler, "euler", LINSPACE, 12, None),
    ("euler_karras_linspace_v_8", EulerDiscreteScheduler, "euler",
     dict(LINSPACE, use_karras_sigmas=True, prediction_type="v_prediction"), 8, None),
    ("euler_sample_cosine_7", EulerDiscreteScheduler, "euler",
     dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="sample"), 7, None),
    ("euler_sd15_1", EulerDiscreteScheduler, "euler", SD15, 1, None),
    ("euler_a_sd15_10", EulerAncestralDiscreteScheduler, "euler-a", SD15, 10, SMALL),
    ("euler_a_v_trailing_8", EulerAncestralDiscreteScheduler, "euler-a", V_TRAILING, 8, SMALL),
    ("euler_a_linspace_6", EulerAncestralDiscreteScheduler, "euler-a", LINSPACE, 6, SMALL),
    ("heun_sd15_10", HeunDiscreteScheduler, "heun", SD15, 10, None),
    ("heun_karras_10", HeunDiscreteScheduler, "heun", dict(SD15, use_karras_sigmas=True), 10, None),
    ("heun_v_trailing_6", HeunDiscreteScheduler, "heun", V_TRAILING, 6, None),
    ("heun_linspace_clip_sample_7", HeunDiscreteScheduler, "heun",
     dict(LINSPACE, prediction_type="sample", clip_sample=True, clip_sample_range=0.5), 7, None),
    ("heun_sd15_1", HeunDiscreteScheduler, "heun", SD15, 1, None),
]


def main():
    torch.manual_seed(0)  # the ancestral draws come from the global generator
    for i, (name, cls, sampler, cfg, steps, shape) in enumerate(CASES):
        s = cls.from_config(cfg)
        noise = initial_noise(100 + i, shape or (2, 4, 5, 7))
        if cls is EulerAncestralDiscreteScheduler:
            with recorded_noise(scheduling_euler_ancestral_discrete) as draws:
                latents, calls = run(s, steps, noise)
        else:
            draws = []
            latents, calls = run(s, steps, noise)
        save(name, s, sampler, steps, noise, latents, calls, draws=draws)


if __name__ == "__main__":
    main()
