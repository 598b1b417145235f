//! The f64 dense linear algebra FID needs: products (the `gemm` crate) and the eigen-decomposition
//! of a symmetric matrix (Householder reduction to tridiagonal form, then the implicit QL method:
//! EISPACK's tred2/tql2 as JAMA writes them, the algorithm LAPACK's dsteqr refines).
//!
//! Matrices are square, n×n, stored column-major (`a[col * n + row]`). For the symmetric input
//! that is the same as row-major; for the eigenvector matrix it puts each eigenvector in one
//! contiguous column, and it makes every inner loop of tred2/tql2 walk memory in order (the
//! row-major transcription strides by n and runs several times slower at n = 2048).

use gemm::Parallelism;

/// Threads for the products: all of rayon's.
fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

/// C = A·B for n×n column-major matrices.
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    gemm_into(&mut c, false, n, n, n, a, n as isize, 1, b, n as isize, 1);
    c
}

/// dst (m×n, column-major, leading dim m) = lhs (m×k) · rhs (k×n), or += with `accumulate`; the
/// strides are gemm's (column, row) pairs so a transposed operand costs nothing.
#[allow(clippy::too_many_arguments)]
pub fn gemm_into(dst: &mut [f64], accumulate: bool, m: usize, n: usize, k: usize, lhs: &[f64], lhs_cs: isize, lhs_rs: isize, rhs: &[f64], rhs_cs: isize, rhs_rs: isize) {
    assert!(dst.len() >= m * n);
    // SAFETY: the callers pass slices covering every element the shapes and strides address.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            m as isize,
            1,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism(),
        )
    }
}

/// Eigenvalues (ascending) of a symmetric n×n matrix, and with `vectors` the orthonormal
/// eigenvectors as the columns of a column-major n×n matrix (column j belongs to value j).
/// Only the lower triangle is read. Returns None if the QL iteration does not converge (it does
/// for every finite symmetric matrix in practice; NaN input is caught before).
pub fn symmetric_eigen(a: &[f64], n: usize, vectors: bool) -> Option<(Vec<f64>, Vec<f64>)> {
    assert_eq!(a.len(), n * n);
    if n == 0 {
        return Some((Vec::new(), Vec::new()));
    }
    let mut v = a.to_vec();
    let (mut d, mut e) = (vec![0.0; n], vec![0.0; n]);
    tridiagonalize(&mut v, &mut d, &mut e, n, vectors);
    ql_implicit(&mut v, &mut d, &mut e, n, vectors)?;
    // ascending order, vectors moved with their values
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
    let values = order.iter().map(|&i| d[i]).collect();
    let vecs = if vectors { order.iter().flat_map(|&i| v[i * n..(i + 1) * n].to_vec()).collect() } else { Vec::new() };
    Some((values, vecs))
}

/// Householder reduction of the symmetric matrix in `v` (column-major: v[j*n + k] is row k,
/// column j) to tridiagonal form: diagonal `d`, subdiagonal `e[1..]`. With `vectors`, `v` ends up
/// holding the orthogonal transformation; without, it is scratch.
fn tridiagonalize(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize, vectors: bool) {
    let at = |row: usize, col: usize| col * n + row;
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for dk in d[..i].iter_mut() {
                *dk /= scale;
                h += *dk * *dk;
            }
            let f = d[i - 1];
            let g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            for j in 0..i {
                let f = d[j];
                v[at(j, i)] = f;
                let col = &v[j * n..j * n + i];
                let mut g = e[j] + col[j] * f;
                for k in j + 1..i {
                    g += col[k] * d[k];
                    e[k] += col[k] * f;
                }
                e[j] = g;
            }
            let mut f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let (f, g) = (d[j], e[j]);
                let col = &mut v[j * n..j * n + i];
                for k in j..i {
                    col[k] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    if vectors {
        // accumulate the transformations
        for i in 0..n - 1 {
            v[at(n - 1, i)] = v[at(i, i)];
            v[at(i, i)] = 1.0;
            let h = d[i + 1];
            if h != 0.0 {
                for k in 0..=i {
                    d[k] = v[at(k, i + 1)] / h;
                }
                let (head, tail) = v.split_at_mut((i + 1) * n);
                let next = &tail[..=i];
                for j in 0..=i {
                    let col = &mut head[j * n..j * n + i + 1];
                    let g: f64 = next.iter().zip(col.iter()).map(|(a, b)| a * b).sum();
                    for (c, dk) in col.iter_mut().zip(&d[..=i]) {
                        *c -= g * dk;
                    }
                }
            }
            for k in 0..=i {
                v[at(k, i + 1)] = 0.0;
            }
        }
        for j in 0..n {
            d[j] = v[at(n - 1, j)];
            v[at(n - 1, j)] = 0.0;
        }
        v[at(n - 1, n - 1)] = 1.0;
    } else {
        // the reduction leaves the tridiagonal's diagonal on v's diagonal (d holds the h's)
        for j in 0..n {
            d[j] = v[at(j, j)];
        }
    }
    e[0] = 0.0;
}

/// The implicit QL method with Wilkinson-like shifts on the tridiagonal (d, e); with `vectors`
/// the rotations are applied to the columns of `v`.
fn ql_implicit(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize, vectors: bool) -> Option<()> {
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let (mut f, mut tst1) = (0.0f64, 0.0f64);
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            let mut iterations = 0;
            loop {
                iterations += 1;
                if iterations > 60 {
                    return None;
                }
                let g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let h = g - d[l];
                for di in d[l + 2..n].iter_mut() {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * e[i];
                    let h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    if vectors {
                        let (left, right) = v.split_at_mut((i + 1) * n);
                        let (ci, ci1) = (&mut left[i * n..], &mut right[..n]);
                        for (a, b) in ci.iter_mut().zip(ci1.iter_mut()) {
                            let h = *b;
                            *b = s * *a + c * h;
                            *a = c * *a - s * h;
                        }
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_symmetric(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let x = next();
                a[i * n + j] = x;
                a[j * n + i] = x;
            }
        }
        a
    }

    #[test]
    fn eigenpairs_reconstruct_the_matrix() {
        for &n in &[1usize, 2, 3, 17, 64] {
            let a = random_symmetric(n, n as u64);
            let (vals, vecs) = symmetric_eigen(&a, n, true).unwrap();
            assert!(vals.windows(2).all(|w| w[0] <= w[1]));
            // A·v_j = λ_j·v_j and VᵀV = I
            let av = matmul(&a, &vecs, n);
            for j in 0..n {
                for k in 0..n {
                    assert!((av[j * n + k] - vals[j] * vecs[j * n + k]).abs() < 1e-11, "n {n} col {j}");
                    let dot: f64 = (0..n).map(|r| vecs[j * n + r] * vecs[k * n + r]).sum();
                    assert!((dot - if j == k { 1.0 } else { 0.0 }).abs() < 1e-11);
                }
            }
            let (only, _) = symmetric_eigen(&a, n, false).unwrap();
            for (x, y) in only.iter().zip(&vals) {
                assert!((x - y).abs() < 1e-11);
            }
            let trace: f64 = (0..n).map(|i| a[i * n + i]).sum();
            assert!((vals.iter().sum::<f64>() - trace).abs() < 1e-10);
        }
    }

    #[test]
    fn diagonal_and_degenerate_matrices() {
        let n = 5;
        let mut a = vec![0.0; n * n];
        for (i, x) in [3.0, -1.0, 0.0, 3.0, 2.0].iter().enumerate() {
            a[i * n + i] = *x;
        }
        let (vals, _) = symmetric_eigen(&a, n, true).unwrap();
        assert_eq!(vals, vec![-1.0, 0.0, 2.0, 3.0, 3.0]);
        let (zero, _) = symmetric_eigen(&vec![0.0; 9], 3, false).unwrap();
        assert_eq!(zero, vec![0.0; 3]);
    }
}
