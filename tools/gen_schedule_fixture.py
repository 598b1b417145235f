"""tests/fixtures/samplers/schedules.json: diffusers' betas → alphas_cumprod for each beta schedule
and DDIMScheduler's timesteps for each spacing / steps_offset / step count, the shared ground
truth every sampler builds on.

Run: python tools/gen_schedule_fixture.py   (torch + diffusers: tools/setup_torch_ref.sh)
"""
import json
import os

from diffusers import DDIMScheduler

from sampler_fixture_common import OUT

SCHEDULES = [
    dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
    dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    dict(beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195),  # the LDMs'
    dict(beta_schedule="squaredcos_cap_v2"),
]
SPACINGS = [(sp, off, n) for sp in ("leading", "trailing", "linspace") for off in (0, 1) for n in (1, 7, 10, 50, 999)]


def main():
    out = {"alphas_cumprod": [], "timesteps": []}
    for cfg in SCHEDULES:
        s = DDIMScheduler(num_train_timesteps=1000, **cfg)
        out["alphas_cumprod"].append({"config": cfg, "values": [float(a) for a in s.alphas_cumprod]})
    for spacing, offset, n in SPACINGS:
        s = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=spacing, steps_offset=offset)
        s.set_timesteps(n)
        out["timesteps"].append({"spacing": spacing, "steps_offset": offset, "steps": n, "values": [int(t) for t in s.timesteps]})
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "schedules.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print(f"wrote {path}: {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
