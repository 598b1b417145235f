//! Sampler parity against diffusers' schedulers (fixtures from tools/gen_sampler_fixtures_*.py):
//! the analytic stand-in model both sides compute, and a runner that replays a fixture.

use std::collections::VecDeque;

use ldm_engine::diffusion::{sample, ModelOutput, RecordedNoise, SamplerKind, SamplerOptions, SchedulerConfig};
use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::{Result, Tensor};

/// out = 0.1·x + 0.5·cos(0.01·t)·tanh(x) (tools/sampler_fixture_common.py `model`).
pub fn analytic_model(x: &Tensor, t: f64) -> Result<ModelOutput> {
    Ok(x.mul_scalar(0.1)?.add(&x.tanh()?.mul_scalar(0.5 * (0.01 * t).cos())?)?.into())
}

pub struct SamplerFixture {
    pub name: String,
    pub file: SafeTensorsFile,
}

impl SamplerFixture {
    pub fn open(name: &str) -> Self {
        let path = format!("{}/tests/fixtures/samplers/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
        SamplerFixture { name: name.to_string(), file: SafeTensorsFile::open(path).unwrap() }
    }
    pub fn meta(&self, key: &str) -> String {
        self.file.metadata()[key].clone()
    }
    pub fn config(&self) -> SchedulerConfig {
        let v: serde_json::Value = serde_json::from_str(&self.meta("config_json")).unwrap();
        SchedulerConfig::from_diffusers(&v).unwrap()
    }
    pub fn tensor(&self, name: &str) -> Tensor {
        self.file.get(name).unwrap()
    }

    /// Runs our sampler on the fixture's initial noise (and recorded draws) and checks the
    /// model's timesteps exactly and the final latents to `tol` relative (max abs diff / max abs ref).
    pub fn check(&self, tol: f64) {
        let kind: SamplerKind = self.meta("sampler").parse().unwrap();
        let opts = SamplerOptions { kind, steps: self.meta("steps").parse().unwrap(), eta: self.meta("eta").parse().unwrap() };
        let cfg = self.config();
        let draws: VecDeque<Tensor> = (0..self.meta("draws").parse::<usize>().unwrap()).map(|i| self.tensor(&format!("draw_{i}"))).collect();
        let mut calls = Vec::new();
        let mut model = |x: &Tensor, t: f64| {
            calls.push(t);
            analytic_model(x, t)
        };
        let out = sample(&cfg, &opts, &mut model, &self.tensor("noise"), &mut RecordedNoise(draws)).unwrap();
        let want_calls = self.tensor("calls").to_vec_f64().unwrap();
        assert_eq!(calls.len(), want_calls.len(), "{}: number of model calls", self.name);
        for (i, (a, b)) in calls.iter().zip(&want_calls).enumerate() {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{}: call {i} at t={a}, reference t={b}", self.name);
        }
        super::fixture::assert_parity_within(&out, &self.tensor("latents"), &format!("{} final latents", self.name), tol);
    }
}

/// One #[test] per fixture name: `sampler_fixture_tests!(tolerance; name, name, ...)`.
#[allow(unused_macros)]
macro_rules! sampler_fixture_tests {
    ($tol:expr; $($name:ident),* $(,)?) => {
        $(#[test]
        fn $name() {
            common::sampler::SamplerFixture::open(stringify!($name)).check($tol);
        })*
    };
}
#[allow(unused_imports)]
pub(crate) use sampler_fixture_tests;
