//! CPU twins of the fused schedule and optimiser kernels (kernels/schedule.cu, kernels/optim.cu):
//! the same f32 operations in the same order, so both devices give the same bits.

use crate::tensor::fused::{AdamWStep, StepCoeffs};

/// x_t[b] = a[b]·x0[b] + s[b]·ε[b] over `per` elements per sample.
pub fn q_sample(x0: &[f32], eps: &[f32], a: &[f32], s: &[f32], per: usize) -> Vec<f32> {
    x0.iter().zip(eps).enumerate().map(|(i, (&x, &e))| a[i / per] * x + s[i / per] * e).collect()
}

/// (out, guided model output) of one guided sampler update; see `tensor::fused::guided_step`.
pub fn guided_step(x: &[f32], mu: &[f32], mc: Option<&[f32]>, h: [Option<&[f32]>; 3], noise: Option<&[f32]>, c: &StepCoeffs) -> (Vec<f32>, Vec<f32>) {
    let n = x.len();
    let (mut out, mut guided) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let u = mu[i];
        let m = match mc {
            Some(mc) => u + c.guidance * (mc[i] - u),
            None => u,
        };
        let mut v = c.x * x[i] + c.model * m;
        for (k, hk) in h.iter().enumerate() {
            if let Some(hk) = hk {
                v += c.history[k] * hk[i];
            }
        }
        if let Some(z) = noise {
            v += c.noise * z[i];
        }
        out.push(v);
        guided.push(m);
    }
    (out, guided)
}

/// torch's lerp: a + w·(b − a) for w < 0.5, else b − (b − a)·(1 − w) (exact at both ends).
fn lerp(a: f32, b: f32, w: f32) -> f32 {
    if w.abs() < 0.5 { a + w * (b - a) } else { b - (b - a) * (1.0 - w) }
}

/// One AdamW update in place (torch.optim.AdamW's single-tensor path, scalars precomputed).
pub fn adamw(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamWStep) {
    for j in 0..w.len() {
        let g = g[j] * s.grad_scale;
        w[j] *= s.decay;
        m[j] = lerp(m[j], g, s.w1);
        v[j] = v[j] * s.b2 + s.w2 * g * g;
        let denom = v[j].sqrt() / s.bc2_sqrt + s.eps;
        w[j] += -s.step_size * m[j] / denom;
    }
}

/// shadow ← shadow − (1 − d)·(shadow − param), in place.
pub fn ema(shadow: &mut [f32], p: &[f32], one_minus: f32) {
    for (s, p) in shadow.iter_mut().zip(p) {
        *s -= one_minus * (*s - p);
    }
}
