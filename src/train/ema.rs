//! Exponential moving average of the weights (CompVis ldm/modules/ema.py `LitEma`): after every
//! optimiser step, shadow ← shadow − (1 − d)·(shadow − param) with d = min(decay, (1 + n)/(10 + n))
//! for the n-th update, so early averages are not dominated by the random initial weights.
//! Samples and the exported model use the shadow weights (CompVis `ema_scope`).

use crate::tensor::fused::{copy_values, ema_update};
use crate::{Result, Tensor};

pub struct Ema {
    pub decay: f64,
    pub num_updates: u64,
    /// one f32 tensor per parameter, named like it
    shadow: Vec<(String, Tensor)>,
}

impl Ema {
    /// Starts at the parameters' current values.
    pub fn new(params: &[(String, Tensor)], decay: f64) -> Result<Self> {
        // owned f32 copies on each parameter's device
        let shadow = params
            .iter()
            .map(|(n, p)| Ok((n.clone(), Tensor::from_vec(p.to_vec::<f32>()?, p.shape())?.to_device(p.device())?)))
            .collect::<Result<_>>()?;
        Ok(Ema { decay, num_updates: 0, shadow })
    }

    pub fn shadow(&self) -> &[(String, Tensor)] {
        &self.shadow
    }

    /// One update from the live parameters (the same order as `new` got them).
    pub fn update(&mut self, params: &[(String, Tensor)]) -> Result<()> {
        self.num_updates += 1;
        let n = self.num_updates as f64;
        let one_minus = (1.0 - self.decay.min((1.0 + n) / (10.0 + n))) as f32;
        for ((_, s), (_, p)) in self.shadow.iter().zip(params) {
            ema_update(s, p, one_minus)?;
        }
        Ok(())
    }

    /// Runs `f` with the shadow weights in the live parameters, then puts the trained ones back.
    pub fn scope<R>(&self, params: &[(String, Tensor)], f: impl FnOnce() -> Result<R>) -> Result<R> {
        // owned copies of the trained weights, on their devices
        let saved: Vec<Tensor> = params.iter().map(|(_, p)| Ok(Tensor::from_vec(p.to_vec::<f32>()?, p.shape())?.to_device(p.device())?)).collect::<Result<_>>()?;
        for ((_, s), (_, p)) in self.shadow.iter().zip(params) {
            copy_values(p, s)?;
        }
        let out = f();
        for (v, (_, p)) in saved.iter().zip(params) {
            copy_values(p, v)?;
        }
        out
    }
}
