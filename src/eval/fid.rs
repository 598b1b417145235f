//! Fréchet Inception Distance (Heusel et al., NeurIPS 2017) between two sets of feature vectors:
//!
//!   FID = |μ₁ − μ₂|² + tr(Σ₁) + tr(Σ₂) − 2·tr((Σ₁Σ₂)^½)
//!
//! with μ the mean and Σ the covariance (n − 1 in the denominator, as numpy.cov) of each set, the
//! formula of pytorch-fid / fid-helper-pytorch / torch-fidelity. They take scipy.linalg.sqrtm of the
//! non-symmetric product Σ₁Σ₂ and keep the real part of its trace; here the trace is computed as
//! Σᵢ √λᵢ over the eigenvalues λ of a symmetric matrix with the same spectrum, which is exact,
//! real by construction and needs no complex arithmetic:
//!   - n₁ ≥ dim (the usual case, 2048-d features of ≥ 2048 images): M = Σ₁^½ Σ₂ Σ₁^½, with Σ₁^½
//!     from the eigen-decomposition of Σ₁;
//!   - fewer images than dimensions: with A the centred features of set 1 (n₁ × dim),
//!     Σ₁ = AᵀA/(n₁−1) and the non-zero eigenvalues of Σ₁Σ₂ are those of M = AΣ₂Aᵀ/(n₁−1), an
//!     n₁ × n₁ matrix (the other eigenvalues are zero). Either set may play set 1; the smaller is
//!     used.
//! Eigenvalues a rounding error below zero are clamped to zero before the square root (Σ is
//! positive semi-definite; scipy's sqrtm turns them into tiny imaginary parts, which it drops).
//! All of it in f64.

use super::linalg::{gemm_into, symmetric_eigen};
use crate::{Error, Result};

/// Mean and covariance of a set of feature vectors.
#[derive(Clone, Debug)]
pub struct FeatureStats {
    pub n: usize,
    pub dim: usize,
    pub mean: Vec<f64>,
    /// dim × dim, symmetric
    pub cov: Vec<f64>,
    /// The centred features (n × dim, row-major) when n ≤ dim, for the small-set trace.
    centred: Option<Vec<f64>>,
}

/// The distance and its three parts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fid {
    pub fid: f64,
    /// |μ₁ − μ₂|²
    pub mean_term: f64,
    /// tr(Σ₁) + tr(Σ₂)
    pub trace_sum: f64,
    /// tr((Σ₁Σ₂)^½)
    pub cross_trace: f64,
}

fn invalid(msg: String) -> Error {
    Error::invalid("fid", msg)
}

impl FeatureStats {
    /// Statistics of `rows` feature vectors of length `dim`, stored row-major in `features`.
    pub fn from_features(features: &[f32], dim: usize) -> Result<Self> {
        if dim == 0 || features.len() % dim != 0 {
            return Err(invalid(format!("{} feature values do not form rows of {dim}", features.len())));
        }
        let n = features.len() / dim;
        if n < 2 {
            return Err(invalid(format!("a covariance needs at least 2 images, got {n}")));
        }
        if let Some(i) = features.iter().position(|x| !x.is_finite()) {
            return Err(invalid(format!("feature {} of image {} is {} (the network produced a non-finite value)", i % dim, i / dim, features[i])));
        }
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        // Σ = AᵀA/(n−1) over chunks of centred rows (bounded memory for 50k-image sets)
        let mut cov = vec![0.0f64; dim * dim];
        let chunk_rows = (1 << 22) / dim.max(1);
        let mut centred_all = if n <= dim { Some(Vec::with_capacity(n * dim)) } else { None };
        for (c, rows) in features.chunks(chunk_rows * dim).enumerate() {
            let r = rows.len() / dim;
            let a: Vec<f64> = rows.chunks_exact(dim).flat_map(|row| row.iter().zip(&mean).map(|(&x, m)| x as f64 - m)).collect();
            // Aᵀ (dim × r): element (i, k) at k·dim + i; A (r × dim): element (k, j) at k·dim + j
            gemm_into(&mut cov, c > 0, dim, dim, r, &a, dim as isize, 1, &a, 1, dim as isize);
            if let Some(all) = centred_all.as_mut() {
                all.extend_from_slice(&a);
            }
        }
        cov.iter_mut().for_each(|x| *x /= (n - 1) as f64);
        Ok(FeatureStats { n, dim, mean, cov, centred: centred_all })
    }

    /// Statistics given directly (e.g. a saved reference set): the small-set path is not available,
    /// so the trace always goes through Σ₁^½.
    pub fn from_moments(n: usize, mean: Vec<f64>, cov: Vec<f64>) -> Result<Self> {
        let dim = mean.len();
        if cov.len() != dim * dim || dim == 0 {
            return Err(invalid(format!("a mean of {dim} values needs a {dim}×{dim} covariance, got {} values", cov.len())));
        }
        Ok(FeatureStats { n, dim, mean, cov, centred: None })
    }
}

/// FID between two sets (see the module doc).
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<Fid> {
    if a.dim != b.dim {
        return Err(invalid(format!("feature sizes differ: {} vs {}", a.dim, b.dim)));
    }
    let d = a.dim;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |s: &FeatureStats| (0..d).map(|i| s.cov[i * d + i]).sum::<f64>();
    let trace_sum = trace(a) + trace(b);
    // the smaller formulation: an n×n matrix from a set's rows, or the dim×dim one
    let small = [(a, b), (b, a)].into_iter().filter(|(s, _)| s.centred.is_some()).min_by_key(|(s, _)| s.n);
    let eigenvalues = match small {
        Some((s, other)) if s.n < d => small_set_spectrum(s, other)?,
        _ => full_spectrum(a, b)?,
    };
    let cross_trace: f64 = eigenvalues.iter().map(|&l| l.max(0.0).sqrt()).sum();
    let fid = mean_term + trace_sum - 2.0 * cross_trace;
    Ok(Fid { fid, mean_term, trace_sum, cross_trace })
}

fn no_convergence() -> Error {
    invalid("the eigenvalue iteration did not converge (degenerate or non-finite covariance)".into())
}

/// Eigenvalues of Σ₁^½ Σ₂ Σ₁^½.
fn full_spectrum(a: &FeatureStats, b: &FeatureStats) -> Result<Vec<f64>> {
    let d = a.dim;
    let (vals, vecs) = symmetric_eigen(&a.cov, d, true).ok_or_else(no_convergence)?;
    // R = V·diag(√λ⁺)·Vᵀ (column-major V: column j at j·d)
    let scaled: Vec<f64> = vecs.chunks_exact(d).zip(&vals).flat_map(|(col, &l)| col.iter().map(move |x| x * l.max(0.0).sqrt())).collect();
    let mut root = vec![0.0; d * d];
    gemm_into(&mut root, false, d, d, d, &scaled, d as isize, 1, &vecs, 1, d as isize);
    let mut t = vec![0.0; d * d];
    gemm_into(&mut t, false, d, d, d, &root, d as isize, 1, &b.cov, d as isize, 1);
    let mut m = vec![0.0; d * d];
    gemm_into(&mut m, false, d, d, d, &t, d as isize, 1, &root, d as isize, 1);
    symmetrize(&mut m, d);
    Ok(symmetric_eigen(&m, d, false).ok_or_else(no_convergence)?.0)
}

/// Eigenvalues of A·Σ_other·Aᵀ/(n−1) for the set `s` with n < dim (its centred rows A).
fn small_set_spectrum(s: &FeatureStats, other: &FeatureStats) -> Result<Vec<f64>> {
    let (n, d) = (s.n, s.dim);
    let a = s.centred.as_ref().expect("small path needs rows");
    // T = A·Σ (n × d, column-major); A row-major: element (i, k) at i·d + k
    let mut t = vec![0.0; n * d];
    gemm_into(&mut t, false, n, d, d, a, 1, d as isize, &other.cov, d as isize, 1);
    // M = T·Aᵀ (n × n); Aᵀ element (k, j) at j·d + k
    let mut m = vec![0.0; n * n];
    gemm_into(&mut m, false, n, n, d, &t, n as isize, 1, a, d as isize, 1);
    m.iter_mut().for_each(|x| *x /= (n - 1) as f64);
    symmetrize(&mut m, n);
    Ok(symmetric_eigen(&m, n, false).ok_or_else(no_convergence)?.0)
}

/// (M + Mᵀ)/2: the products are symmetric up to rounding; the eigen-solver reads one triangle.
fn symmetrize(m: &mut [f64], n: usize) {
    for i in 0..n {
        for j in 0..i {
            let v = 0.5 * (m[i * n + j] + m[j * n + i]);
            m[i * n + j] = v;
            m[j * n + i] = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random features with per-dimension scale and offset.
    fn features(n: usize, dim: usize, seed: u64, shift: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n * dim)
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = ((s >> 11) as f64 / (1u64 << 53) as f64) as f32 - 0.5;
                u * (1.0 + (i % dim) as f32 * 0.1) + shift
            })
            .collect()
    }

    #[test]
    fn identical_sets_are_at_distance_zero() {
        for &(n, dim) in &[(40usize, 8usize), (6, 8)] {
            let f = features(n, dim, 1, 0.0);
            let s = FeatureStats::from_features(&f, dim).unwrap();
            let r = frechet_distance(&s, &s).unwrap();
            assert!(r.fid.abs() < 1e-9 * r.trace_sum, "n {n}: {r:?}");
        }
    }

    #[test]
    fn small_set_path_equals_the_full_one() {
        // n < dim for both sets: the n×n spectrum must give the dim×dim one's trace
        let dim = 12;
        let a = FeatureStats::from_features(&features(7, dim, 2, 0.0), dim).unwrap();
        let b = FeatureStats::from_features(&features(9, dim, 3, 0.3), dim).unwrap();
        let small = frechet_distance(&a, &b).unwrap();
        let full_a = FeatureStats::from_moments(a.n, a.mean.clone(), a.cov.clone()).unwrap();
        let full_b = FeatureStats::from_moments(b.n, b.mean.clone(), b.cov.clone()).unwrap();
        let full = frechet_distance(&full_a, &full_b).unwrap();
        // Σ₁ has rank 6 of 12 here: in the full form its null space comes out of the eigen-solver
        // as eigenvalues of rounding size (~1e-16), whose square roots (~1e-8) add to the trace —
        // the small form never sees them (it is the more accurate one for few images)
        assert!((small.fid - full.fid).abs() < 1e-7 * full.trace_sum, "{small:?} vs {full:?}");
        // a pure shift adds |Δμ|² only
        let shifted = FeatureStats::from_features(&features(40, 4, 5, 1.5), 4).unwrap();
        let base = FeatureStats::from_features(&features(40, 4, 5, 0.0), 4).unwrap();
        let r = frechet_distance(&base, &shifted).unwrap();
        // (the features are f32: the shifted copy is rounded, hence 1e-6)
        assert!((r.fid - 4.0 * 1.5 * 1.5).abs() < 1e-6, "{r:?}");
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(FeatureStats::from_features(&[1.0; 8], 8).unwrap_err().to_string().contains("at least 2 images"));
        assert!(FeatureStats::from_features(&[1.0; 9], 8).is_err());
        let mut f = features(3, 4, 1, 0.0);
        f[5] = f32::NAN;
        assert!(FeatureStats::from_features(&f, 4).unwrap_err().to_string().contains("image 1"));
        let a = FeatureStats::from_features(&features(3, 4, 1, 0.0), 4).unwrap();
        let b = FeatureStats::from_features(&features(3, 5, 1, 0.0), 5).unwrap();
        assert!(frechet_distance(&a, &b).unwrap_err().to_string().contains("4 vs 5"));
    }
}
