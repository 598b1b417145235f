"""DPM-Solver++ 2M parity fixtures (tests/sampler_dpm.rs): diffusers' DPMSolverMultistepScheduler with
the defaults SD pipelines use (dpmsolver++, order 2, midpoint, lower_order_final, final sigma zero)
run on the analytic stand-in model of sampler_fixture_common.

Run from tools/:  /opt/torchref/bin/python gen_sampler_fixtures_dpm.py
"""
import json
import os

from diffusers import DPMSolverMultistepScheduler
from diffusers.configuration_utils import FrozenDict

from sampler_fixture_common import OUT, initial_noise, run, save

SD15 = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            steps_offset=1)

# name: (config, steps, seed). Each case moves one thing away from the SD1.5 baseline.
CASES = {
    # runwayml's scheduler_config.json has no timestep_spacing, so this scheduler's default
    # (linspace) applies when a pipeline swaps DPM++ in with from_config
    "dpmpp2m_sd15_linspace_20": (dict(SD15), 20, 0),
    "dpmpp2m_sd15_leading_20": (dict(SD15, timestep_spacing="leading"), 20, 1),
    # fewer than 15 steps: lower_order_final territory; the last step is first order
    "dpmpp2m_sd15_linspace_10": (dict(SD15), 10, 2),
    "dpmpp2m_sd15_karras_15": (dict(SD15, use_karras_sigmas=True), 15, 3),
    # SD2-v style: v-prediction with trailing spacing
    "dpmpp2m_vpred_trailing_12": (dict(SD15, prediction_type="v_prediction", timestep_spacing="trailing"), 12, 4),
    # the CompVis LDM schedule (linear_start 0.0015, linear_end 0.0155), leading with offset 1
    "dpmpp2m_ldm_leading_25": (dict(SD15, beta_start=0.0015, beta_end=0.0155, timestep_spacing="leading"), 25, 5),
    # x0-predicting model on the plain linear schedule, and a single step
    "dpmpp2m_sample_linear_7": (dict(beta_schedule="linear", prediction_type="sample"), 7, 6),
    "dpmpp2m_cosine_8": (dict(beta_schedule="squaredcos_cap_v2"), 8, 7),
    "dpmpp2m_sd15_linspace_1": (dict(SD15), 1, 8),
}

for name, (config, steps, seed) in CASES.items():
    scheduler = DPMSolverMultistepScheduler(**config)
    noise = initial_noise(seed)
    latents, calls = run(scheduler, steps, noise)
    # JSON has no -inf: leave lambda_min_clipped (default -inf, clips nothing) out of the saved config;
    # diffusers lists _use_default_values in set order, which changes run to run: sort it
    config = {k: v for k, v in scheduler.config.items() if k != "lambda_min_clipped"}
    config["_use_default_values"] = sorted(config.get("_use_default_values", []))
    scheduler._internal_dict = FrozenDict(config)
    save(name, scheduler, "dpm++2m", steps, noise, latents, calls)

# The model timesteps of many more step counts than the runs above cover (this scheduler spaces
# steps + 1 points, unlike DDIM, and Karras timesteps come from interpolating log σ).
schedules = []
for spacing, offset, karras in [("linspace", 0, False), ("leading", 1, False), ("trailing", 0, False),
                                ("linspace", 0, True)]:
    for steps in [1, 2, 3, 7, 14, 15, 33, 50, 120]:
        if karras and steps > 100:
            continue  # Karras spacing repeats timesteps at the low end there
        scheduler = DPMSolverMultistepScheduler(**dict(SD15, timestep_spacing=spacing, steps_offset=offset,
                                                       use_karras_sigmas=karras))
        scheduler.set_timesteps(steps)
        schedules.append({"spacing": spacing, "steps_offset": offset, "karras": karras, "steps": steps,
                          "timesteps": scheduler.timesteps.tolist()})
with open(os.path.join(OUT, "dpmpp2m_timesteps.json"), "w") as f:
    json.dump(schedules, f, separators=(",", ":"))
print(f"dpmpp2m_timesteps.json: {len(schedules)} schedules")
