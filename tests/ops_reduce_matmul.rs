//! Reductions, softmax, matmul and indexing ops against f64 references, with gradient checks.

mod common;
use common::*;
use ldm_engine::{DType, Tensor};

/// f64 reduction of `x` (shape) over `dims` with keepdim, by brute force over every element.
fn reduce_ref(x: &[f64], shape: &[usize], dims: &[usize], init: f64, f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    let out_shape: Vec<usize> = shape.iter().enumerate().map(|(i, &s)| if dims.contains(&i) { 1 } else { s }).collect();
    let mut out = vec![init; out_shape.iter().product()];
    for (i, &v) in x.iter().enumerate() {
        let mut idx = unravel(i, shape);
        for &d in dims {
            idx[d] = 0;
        }
        let o = ravel(&idx, &out_shape);
        out[o] = f(out[o], v);
    }
    out
}

#[test]
fn reductions_over_any_dims() {
    let shape = [3, 5, 7];
    let x = strided_copy(&randn(&shape, 1));
    let v = vals(&x);
    // 37 is coprime with 105, so i·37 mod 105 is a permutation: distinct, scrambled values
    let perm: Vec<f32> = (0..105).map(|i| ((i * 37) % 105) as f32 * 0.1 - 5.0).collect();
    let spaced = Tensor::from_vec(perm, &shape).unwrap();
    for dims in [vec![0], vec![1], vec![2], vec![0, 2], vec![0, 1, 2]] {
        let id: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
        let n: usize = dims.iter().map(|&d| shape[d]).product();
        let sum = reduce_ref(&v, &shape, &dims, 0.0, |a, b| a + b);
        // f64 accumulation inside; one f32 rounding of the result
        assert_close(&vals(&x.sum_keepdim(&id).unwrap()), &sum, 1e-6, 1e-6, "sum");
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        assert_close(&vals(&x.mean_keepdim(&id).unwrap()), &mean, 1e-6, 1e-6, "mean");
        assert_close(&vals(&x.max_keepdim(&id).unwrap()), &reduce_ref(&v, &shape, &dims, f64::MIN, f64::max), 0.0, 0.0, "max");
        assert_close(&vals(&x.min_keepdim(&id).unwrap()), &reduce_ref(&v, &shape, &dims, f64::MAX, f64::min), 0.0, 0.0, "min");
        let sq = reduce_ref(&v.iter().map(|a| a * a).collect::<Vec<_>>(), &shape, &dims, 0.0, |a, b| a + b);
        let var: Vec<f64> = sum.iter().zip(&sq).map(|(s, q)| (q - s * s / n as f64) / (n as f64 - 1.0)).collect();
        // two passes in f32 (mean, then squared deviations)
        assert_close(&vals(&x.var_keepdim(&id, true).unwrap()), &var, 1e-5, 1e-5, "var");
        grad_check(|t| t[0].sum_keepdim(&id), &[x.clone()], "sum");
        grad_check(|t| t[0].mean(&id), &[x.clone()], "mean");
        // max/min: distinct values ≥ 0.1 apart, so the FD step (1e-2) never changes the argmax
        grad_check(|t| t[0].max_keepdim(&id), &[spaced.clone()], "max");
        grad_check(|t| t[0].min(&id), &[spaced.clone()], "min");
        grad_check(|t| t[0].var_keepdim(&id, false), &[x.clone()], "var");
    }
    assert_eq!(x.sum(&[1]).unwrap().shape(), &[3, 7]);
    assert_eq!(x.sum_all().unwrap().shape(), &[] as &[usize]);
    assert!(x.sum(&[3]).is_err());
    assert!(x.max(&[-4]).is_err());
}

#[test]
fn argmax_picks_first_maximum() {
    let x = Tensor::from_vec(vec![1f32, 3.0, 3.0, -1.0, 5.0, 0.0], &[2, 3]).unwrap();
    assert_eq!(x.argmax(1, false).unwrap().to_vec::<i64>().unwrap(), vec![1, 1]);
    assert_eq!(x.argmax(0, true).unwrap().to_vec::<i64>().unwrap(), vec![0, 1, 0]);
    let r = randn(&[4, 9, 5], 3);
    let a = r.argmax(1, false).unwrap().to_vec::<i64>().unwrap();
    let v = vals(&r);
    for i in 0..4 {
        for k in 0..5 {
            let col: Vec<f64> = (0..9).map(|j| v[(i * 9 + j) * 5 + k]).collect();
            let best = col.iter().enumerate().fold(0, |b, (j, &c)| if c > col[b] { j } else { b });
            assert_eq!(a[i * 5 + k] as usize, best);
        }
    }
}

#[test]
fn softmax_and_log_softmax_any_dim() {
    let shape = [4, 6, 5];
    let x = randn(&shape, 5).mul_scalar(3.0).unwrap();
    let v = vals(&x);
    for dim in 0..3 {
        let max = reduce_ref(&v, &shape, &[dim], f64::MIN, f64::max);
        let kshape: Vec<usize> = shape.iter().enumerate().map(|(i, &s)| if i == dim { 1 } else { s }).collect();
        let key = |i: usize| { let mut ix = unravel(i, &shape); ix[dim] = 0; ravel(&ix, &kshape) };
        let e: Vec<f64> = v.iter().enumerate().map(|(i, &a)| (a - max[key(i)]).exp()).collect();
        let z = reduce_ref(&e, &shape, &[dim], 0.0, |a, b| a + b);
        let sm: Vec<f64> = e.iter().enumerate().map(|(i, &a)| a / z[key(i)]).collect();
        let lsm: Vec<f64> = v.iter().enumerate().map(|(i, &a)| a - max[key(i)] - z[key(i)].ln()).collect();
        // f32 exp and a sum of ≤ 6 terms
        assert_close(&vals(&x.softmax(dim as isize).unwrap()), &sm, 1e-6, 1e-5, "softmax");
        assert_close(&vals(&x.log_softmax(dim as isize).unwrap()), &lsm, 1e-5, 1e-5, "log_softmax");
        grad_check(|t| t[0].softmax(dim as isize), &[x.clone()], "softmax");
        grad_check(|t| t[0].log_softmax(dim as isize), &[x.clone()], "log_softmax");
    }
    // large logits do not overflow
    let big = Tensor::from_vec(vec![1000f32, 1001.0, 999.0], &[3]).unwrap();
    let s = vals(&big.softmax(0).unwrap());
    assert!(s.iter().all(|v| v.is_finite()) && (s.iter().sum::<f64>() - 1.0).abs() < 1e-6);
}

fn matmul_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn matmul_batched_broadcast_and_strided() {
    // odd sizes, batch broadcast [2,1] x [3]
    let (m, k, n) = (7, 13, 9);
    let a = randn(&[2, 1, m, k], 11);
    let b = strided_copy(&randn(&[3, k, n], 12));
    let c = a.matmul(&b).unwrap();
    assert_eq!(c.shape(), &[2, 3, m, n]);
    let (va, vb, vc) = (vals(&a), vals(&b), vals(&c));
    for i in 0..2 {
        for j in 0..3 {
            let want = matmul_ref(&va[i * m * k..(i + 1) * m * k], &vb[j * k * n..(j + 1) * k * n], m, k, n);
            let off = (i * 3 + j) * m * n;
            // f32 accumulation over k = 13 terms of O(1) products
            assert_close(&vc[off..off + m * n], &want, 1e-5, 1e-5, "batched matmul");
        }
    }
    // a transposed operand is read in place
    let at = randn(&[k, m], 13).t().unwrap();
    assert!(!at.is_contiguous());
    let c2 = at.matmul(&randn(&[k, n], 14)).unwrap();
    let want = matmul_ref(&vals(&at), &vals(&randn(&[k, n], 14)), m, k, n);
    assert_close(&vals(&c2), &want, 1e-5, 1e-5, "transposed lhs");
    // big enough for the threaded path
    let (m, k, n) = (130, 257, 190);
    let a = randn(&[m, k], 15);
    let b = randn(&[k, n], 16);
    let want = matmul_ref(&vals(&a), &vals(&b), m, k, n);
    // f32 accumulation over 257 terms: error ~ sqrt(k)·ulp·|terms|
    assert_close(&vals(&a.matmul(&b).unwrap()), &want, 1e-4, 1e-5, "large matmul");
    assert!(a.matmul(&a).is_err());
    grad_check(|t| t[0].matmul(&t[1]), &[randn(&[2, 1, 3, 5], 17), randn(&[3, 5, 4], 18)], "matmul");
    grad_check(|t| t[0].linear(&t[1], Some(&t[2])), &[randn(&[2, 3, 5], 19), randn(&[4, 5], 20), randn(&[4], 21)], "linear");
    // linear_add: linear then add here (the fused form is CUDA's, tests/device_ops.rs), values and
    // gradients through all four inputs; a residual of the wrong shape is refused
    let (x, w, b, r) = (randn(&[2, 3, 5], 19), randn(&[4, 5], 20), randn(&[4], 21), randn(&[2, 3, 4], 22));
    let want = x.linear(&w, Some(&b)).unwrap().add(&r).unwrap();
    assert_close(&vals(&x.linear_add(&w, Some(&b), &r).unwrap()), &vals(&want), 0.0, 0.0, "linear_add");
    grad_check(|t| t[0].linear_add(&t[1], Some(&t[2]), &t[3]), &[x, w, b, r], "linear_add");
    assert!(randn(&[2, 3, 5], 19).linear_add(&randn(&[4, 5], 20), None, &randn(&[2, 3, 5], 23)).is_err());
}

#[test]
fn cat_stack_index_select_gather() {
    let a = randn(&[2, 3, 4], 31);
    let b = strided_copy(&randn(&[2, 4, 3], 32)).transpose(1, 2).unwrap(); // [2,3,3]... shape check
    let b = b.narrow(1, 0, 3).unwrap().contiguous().unwrap();
    let c = Tensor::cat(&[&a, &b.narrow(2, 0, 2).unwrap()], 2).unwrap();
    assert_eq!(c.shape(), &[2, 3, 6]);
    let (va, vb2, vc) = (vals(&a), vals(&b.narrow(2, 0, 2).unwrap()), vals(&c));
    for i in 0..36 {
        let ix = unravel(i, &[2, 3, 6]);
        let want = if ix[2] < 4 { va[ravel(&[ix[0], ix[1], ix[2]], &[2, 3, 4])] } else { vb2[ravel(&[ix[0], ix[1], ix[2] - 4], &[2, 3, 2])] };
        assert_eq!(vc[i], want);
    }
    assert!(Tensor::cat(&[&a, &randn(&[2, 2, 2], 1)], 2).is_err());
    let s = Tensor::stack(&[&a, &a.neg().unwrap()], 1).unwrap();
    assert_eq!(s.shape(), &[2, 2, 3, 4]);
    assert_eq!(vals(&s.narrow(1, 1, 1).unwrap().squeeze(1).unwrap()), vals(&a.neg().unwrap()));
    // integer tensors move byte for byte
    let ints = Tensor::from_vec(vec![1i64 << 40, 2, 3], &[3]).unwrap();
    assert_eq!(Tensor::cat(&[&ints, &ints], 0).unwrap().to_vec::<i64>().unwrap(), vec![1 << 40, 2, 3, 1 << 40, 2, 3]);

    let idx = Tensor::from_vec(vec![3i64, 0, 3, 1], &[4]).unwrap();
    let sel = a.index_select(&idx, 2).unwrap();
    assert_eq!(sel.shape(), &[2, 3, 4]);
    let vs = vals(&sel);
    for i in 0..24 {
        let ix = unravel(i, &[2, 3, 4]);
        let src = [3, 0, 3, 1][ix[2]];
        assert_eq!(vs[i], va[ravel(&[ix[0], ix[1], src], &[2, 3, 4])]);
    }
    assert!(a.index_select(&Tensor::from_vec(vec![4i64], &[1]).unwrap(), 2).is_err());
    assert!(a.index_select(&Tensor::from_vec(vec![-1i64], &[1]).unwrap(), 2).is_err());

    let table = randn(&[10, 6], 33);
    let ids = Tensor::from_vec(vec![9i64, 0, 4, 4, 2, 7], &[2, 3]).unwrap();
    let e = table.embedding(&ids).unwrap();
    assert_eq!(e.shape(), &[2, 3, 6]);
    let vt = vals(&table);
    assert_eq!(vals(&e.narrow(1, 0, 1).unwrap().flatten_all().unwrap().narrow(0, 0, 6).unwrap()), vt[54..60].to_vec());

    let gidx = Tensor::from_vec(vec![0i64, 2, 1, 1, 0, 0], &[2, 1, 3]).unwrap();
    let gx = a.gather(&gidx, 1).unwrap();
    assert_eq!(gx.shape(), &[2, 1, 3]);
    let vg = vals(&gx);
    for i in 0..6 {
        let ix = unravel(i, &[2, 1, 3]);
        let src = [0, 2, 1, 1, 0, 0][i];
        assert_eq!(vg[i], va[ravel(&[ix[0], src, ix[2]], &[2, 3, 4])]);
    }

    grad_check(|t| Tensor::cat(&[&t[0], &t[1]], 1), &[randn(&[2, 3, 2], 34), randn(&[2, 1, 2], 35)], "cat");
    grad_check(|t| Tensor::stack(&[&t[0], &t[1]], 0), &[randn(&[3, 2], 36), randn(&[3, 2], 37)], "stack");
    grad_check(|t| t[0].index_select(&idx, 2), &[a.clone()], "index_select (repeated index accumulates)");
    grad_check(|t| t[0].embedding(&ids), &[table.clone()], "embedding");
    grad_check(|t| t[0].gather(&gidx, 1), &[a.clone()], "gather");
}

#[test]
fn dtype_and_device_errors_name_the_op() {
    let a = randn(&[2, 3], 1);
    let h = a.to_dtype(DType::F16).unwrap();
    let e = a.add(&h).unwrap_err().to_string();
    assert!(e.contains("add") && e.contains("f32") && e.contains("f16"), "{e}");
    let e = a.matmul(&randn(&[4, 5], 2)).unwrap_err().to_string();
    assert!(e.contains("matmul") && e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
    let i = Tensor::from_vec(vec![1i64, 2], &[2]).unwrap();
    assert!(i.exp().unwrap_err().to_string().contains("exp"));
    assert!(a.to_device(ldm_engine::Device::Cuda(0)).is_err());
}
