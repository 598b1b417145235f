//! DDIM, DDPM and PLMS against diffusers' DDIMScheduler, DDPMScheduler and PNDMScheduler
//! (skip_prk_steps) on the analytic stand-in model (fixtures: tools/gen_sampler_fixtures_ddim.py).
//!
//! Tolerance 1e-4 relative on the final latents (the bar is 1e-3): diffusers keeps ᾱ and
//! every coefficient in f32 tensors, we form the coefficients in f64 from the same f32 ᾱ, so the
//! two differ by f32 rounding per step (observed ≲1e-6).

mod common;

use common::sampler::{analytic_model, SamplerFixture};
use ldm_engine::diffusion::{build, sample, NoiseSource, Prediction, RecordedNoise, SamplerKind, SamplerOptions, SchedulerConfig, SeededNoise, TimestepSpacing};
use ldm_engine::{DType, Result, Tensor};
use rand::SeedableRng;

const TOL: f64 = 1e-4;

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            SamplerFixture::open(stringify!($name)).check(TOL);
        })*
    };
}

fixtures!(
    ddim_sd15_20,
    ddim_sd15_eta1_6,
    ddim_v_trailing_15,
    ddim_linspace_20,
    ddim_linspace_eta05_7,
    ddim_ldm_50,
    ddim_clip_10,
    ddim_sample_clip_range2_10,
    plms_sd15_5,
    plms_sd15_20,
    plms_sd15_1,
    plms_sd15_2,
    plms_v_20,
    plms_v_trailing_5,
    plms_linspace_ldm_20,
);
