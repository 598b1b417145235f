//! Elementwise ops, views and casts against f64 references: odd sizes, non-contiguous views,
//! broadcasting; every differentiable op also against finite differences.

mod common;
use common::*;
use ldm_engine::tensor::UnaryOp;
use ldm_engine::{DType, Tensor};

/// f64 twins of the unary ops (independent of the engine's f32 math).
fn unary_ref(op: UnaryOp, x: f64) -> f64 {
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let erf = |x: f64| {
        // Abramowitz–Stegun 7.1.26 is too coarse for a reference: integrate erf' by Simpson instead.
        let n = 2000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    };
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Sqr => x * x,
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sig(x),
        UnaryOp::Silu => x * sig(x),
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::GeluErf => 0.5 * x * (1.0 + erf(x / 2f64.sqrt())),
        UnaryOp::GeluTanh => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh()),
        UnaryOp::QuickGelu => x * sig(1.702 * x),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
    }
}

const ALL_UNARY: [UnaryOp; 17] = [
    UnaryOp::Neg,
    UnaryOp::Abs,
    UnaryOp::Exp,
    UnaryOp::Log,
    UnaryOp::Sqrt,
    UnaryOp::Rsqrt,
    UnaryOp::Recip,
    UnaryOp::Sqr,
    UnaryOp::Tanh,
    UnaryOp::Sigmoid,
    UnaryOp::Silu,
    UnaryOp::Relu,
    UnaryOp::GeluErf,
    UnaryOp::GeluTanh,
    UnaryOp::QuickGelu,
    UnaryOp::Sin,
    UnaryOp::Cos,
];

/// log/sqrt/rsqrt/recip need positive inputs away from 0; the rest take normals.
fn input_for(op: UnaryOp, shape: &[usize], seed: u64) -> Tensor {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip => rand(shape, 0.3, 3.0, seed),
        _ => randn(shape, seed).mul_scalar(2.0).unwrap(),
    }
}

#[test]
fn unary_forward_matches_f64_on_strided_views() {
    for (i, &op) in ALL_UNARY.iter().enumerate() {
        let x = strided_copy(&input_for(op, &[7, 13], i as u64));
        assert!(!x.is_contiguous());
        let y = x.unary(op).unwrap();
        let want: Vec<f64> = vals(&x).iter().map(|&v| unary_ref(op, v)).collect();
        // f32 libm functions are within a few ulp; erf-based GELU within 2e-7 abs.
        assert_close(&vals(&y), &want, 1e-6, 1e-6, op.name());
    }
}

#[test]
fn unary_gradients_match_finite_differences() {
    for (i, &op) in ALL_UNARY.iter().enumerate() {
        if op == UnaryOp::Abs || op == UnaryOp::Relu {
            continue; // kinks at 0; checked below away from it
        }
        let x = input_for(op, &[3, 5], 100 + i as u64);
        grad_check(|t| t[0].unary(op), &[x], op.name());
    }
    let x = rand(&[3, 5], 0.2, 2.0, 7).mul(&randn(&[3, 5], 8).ge(&Tensor::zeros(&[], DType::F32)).unwrap().to_dtype(DType::F32).unwrap().affine(2.0, -1.0).unwrap()).unwrap();
    grad_check(|t| t[0].abs(), &[x.clone()], "abs");
    grad_check(|t| t[0].relu(), &[x], "relu");
}

#[test]
fn binary_broadcasting_forward() {
    let a = randn(&[2, 3, 5], 1);
    let b = randn(&[3, 1], 2);
    let c = rand(&[5], 0.5, 2.0, 3);
    let (va, vb, vc) = (vals(&a), vals(&b), vals(&c));
    let checks: Vec<(&str, Tensor, Box<dyn Fn(f64, f64) -> f64>, &Tensor, &Vec<f64>)> = vec![
        ("add", a.add(&b).unwrap(), Box::new(|x, y| x + y), &b, &vb),
        ("sub", a.sub(&b).unwrap(), Box::new(|x, y| x - y), &b, &vb),
        ("mul", a.mul(&b).unwrap(), Box::new(|x, y| x * y), &b, &vb),
        ("div", a.div(&c).unwrap(), Box::new(|x, y| x / y), &c, &vc),
        ("maximum", a.maximum(&b).unwrap(), Box::new(f64::max), &b, &vb),
        ("minimum", a.minimum(&c).unwrap(), Box::new(f64::min), &c, &vc),
    ];
    for (name, y, f, rhs, vr) in checks {
        assert_eq!(y.shape(), &[2, 3, 5]);
        let want: Vec<f64> = (0..30)
            .map(|i| {
                let idx = unravel(i, &[2, 3, 5]);
                let r = if rhs.rank() == 2 { vr[idx[1]] } else { vr[idx[2]] };
                f(va[i], r)
            })
            .collect();
        // one f32 rounding of the result
        assert_close(&vals(&y), &want, 1e-6, 1e-6, name);
    }
    // both sides broadcast, and a strided lhs
    let p = strided_copy(&randn(&[4, 1, 3], 4).reshape(&[4, 3]).unwrap()).reshape(&[4, 1, 3]).unwrap();
    let q = randn(&[1, 5, 1], 5);
    let y = p.add(&q).unwrap();
    let (vp, vq) = (vals(&p), vals(&q));
    let want: Vec<f64> = (0..60).map(|i| { let ix = unravel(i, &[4, 5, 3]); vp[ix[0] * 3 + ix[2]] + vq[ix[1]] }).collect();
    assert_close(&vals(&y), &want, 1e-6, 1e-6, "add both broadcast");
    assert!(a.add(&randn(&[4], 6)).is_err());
}

#[test]
fn binary_gradients_reduce_over_broadcast_dims() {
    let a = randn(&[2, 3, 4], 11);
    let b = randn(&[3, 1], 12);
    let pos = rand(&[1, 4], 0.5, 2.0, 13);
    grad_check(|t| t[0].add(&t[1]), &[a.clone(), b.clone()], "add");
    grad_check(|t| t[0].sub(&t[1]), &[a.clone(), b.clone()], "sub");
    grad_check(|t| t[0].mul(&t[1]), &[a.clone(), b.clone()], "mul");
    grad_check(|t| t[0].div(&t[1]), &[a.clone(), pos], "div");
    // maximum/minimum: inputs kept apart so the FD step never crosses a switch point
    let c = a.add_scalar(0.5).unwrap().mul(&a.ge(&Tensor::zeros(&[], DType::F32)).unwrap().to_dtype(DType::F32).unwrap()).unwrap();
    let d = Tensor::full(0.25, &[2, 3, 4], DType::F32);
    grad_check(|t| t[0].maximum(&t[1]), &[c.clone(), d.clone()], "maximum");
    grad_check(|t| t[0].minimum(&t[1]), &[c, d], "minimum");
}

#[test]
fn affine_powf_where_cmp() {
    let x = rand(&[3, 7], 0.2, 2.0, 21);
    let vx = vals(&x);
    assert_close(&vals(&x.affine(-1.5, 0.25).unwrap()), &vx.iter().map(|v| v * -1.5 + 0.25).collect::<Vec<_>>(), 1e-6, 1e-6, "affine");
    assert_close(&vals(&x.powf(1.7).unwrap()), &vx.iter().map(|v| v.powf(1.7)).collect::<Vec<_>>(), 1e-6, 1e-5, "powf");
    grad_check(|t| t[0].affine(-1.5, 0.25), &[x.clone()], "affine");
    grad_check(|t| t[0].powf(1.7), &[x.clone()], "powf");

    let y = randn(&[3, 7], 22);
    let vy = vals(&y);
    let m = x.gt(&y).unwrap();
    assert_eq!(m.dtype(), DType::U8);
    let want: Vec<f64> = vx.iter().zip(&vy).map(|(a, b)| (a > b) as u8 as f64).collect();
    assert_eq!(vals(&m), want);
    for (name, t, f) in [
        ("eq", x.eq(&x).unwrap(), Box::new(|_: f64, _: f64| true) as Box<dyn Fn(f64, f64) -> bool>),
        ("ne", x.ne(&y).unwrap(), Box::new(|a: f64, b: f64| a != b)),
        ("lt", x.lt(&y).unwrap(), Box::new(|a: f64, b: f64| a < b)),
        ("le", x.le(&y).unwrap(), Box::new(|a: f64, b: f64| a <= b)),
        ("ge", x.ge(&y).unwrap(), Box::new(|a: f64, b: f64| a >= b)),
    ] {
        let rhs = if name == "eq" { &vx } else { &vy };
        let want: Vec<f64> = vx.iter().zip(rhs).map(|(&a, &b)| f(a, b) as u8 as f64).collect();
        assert_eq!(vals(&t), want, "{name}");
    }
    let w = m.where_cond(&x, &y.narrow(0, 1, 1).unwrap()).unwrap();
    let want: Vec<f64> = (0..21).map(|i| if want_mask(&vx, &vy, i) { vx[i] } else { vy[7 + i % 7] }).collect();
    assert_close(&vals(&w), &want, 0.0, 0.0, "where");
    grad_check(|t| m.where_cond(&t[0], &t[1]), &[x.clone(), y.narrow(0, 1, 1).unwrap().contiguous().unwrap()], "where");
}

fn want_mask(a: &[f64], b: &[f64], i: usize) -> bool {
    a[i] > b[i]
}

#[test]
fn views_share_storage_and_backprop() {
    let x = randn(&[2, 3, 4], 31);
    let v = vals(&x);
    let p = x.permute(&[2, 0, 1]).unwrap();
    assert!(p.same_storage(&x) && !p.is_contiguous());
    assert_eq!(p.shape(), &[4, 2, 3]);
    let want: Vec<f64> = (0..24).map(|i| { let ix = unravel(i, &[4, 2, 3]); v[ravel(&[ix[1], ix[2], ix[0]], &[2, 3, 4])] }).collect();
    assert_eq!(vals(&p), want);
    let n = x.narrow(2, 1, 2).unwrap();
    assert!(n.same_storage(&x));
    let want: Vec<f64> = (0..12).map(|i| { let ix = unravel(i, &[2, 3, 2]); v[ravel(&[ix[0], ix[1], ix[2] + 1], &[2, 3, 4])] }).collect();
    assert_eq!(vals(&n), want);
    let r = x.reshape(&[6, 4]).unwrap();
    assert!(r.same_storage(&x));
    let u = x.unsqueeze(1).unwrap();
    assert_eq!(u.shape(), &[2, 1, 3, 4]);
    assert_eq!(u.squeeze(1).unwrap().shape(), &[2, 3, 4]);
    assert!(x.squeeze(0).is_err());
    let b = randn(&[3, 1], 32).broadcast_as(&[2, 3, 5]).unwrap();
    assert_eq!(b.shape(), &[2, 3, 5]);
    let c = p.contiguous().unwrap();
    assert!(c.is_contiguous() && !c.same_storage(&x));
    assert_eq!(vals(&c), vals(&p));
    // reshape of a non-contiguous view copies, values in logical order
    let rp = p.reshape(&[8, 3]).unwrap();
    assert_eq!(vals(&rp), vals(&p));
    let ch = x.chunk(2, 2).unwrap();
    assert_eq!(ch.len(), 2);
    assert_eq!(vals(&ch[1]), vals(&x.narrow(2, 2, 2).unwrap()));
    assert_eq!(x.chunk(3, 1).unwrap().len(), 3);

    grad_check(|t| t[0].permute(&[2, 0, 1])?.mul(&t[0].permute(&[2, 0, 1])?), &[x.clone()], "permute");
    grad_check(|t| t[0].narrow(1, 1, 2), &[x.clone()], "narrow");
    grad_check(|t| t[0].transpose(0, 2)?.reshape(&[4, 6]), &[x.clone()], "reshape of a strided view");
    grad_check(|t| t[0].broadcast_as(&[2, 3, 5]), &[randn(&[3, 1], 33)], "broadcast_as");
    grad_check(|t| t[0].unsqueeze(0)?.squeeze(0), &[x.clone()], "squeeze/unsqueeze");
}

#[test]
fn creation_and_casts() {
    let a = Tensor::arange(0.0, 5.0, 1.0, DType::I64).unwrap();
    assert_eq!(a.to_vec::<i64>().unwrap(), vec![0, 1, 2, 3, 4]);
    let f = Tensor::arange(-1.0, 1.0, 0.5, DType::F32).unwrap();
    assert_eq!(vals(&f), vec![-1.0, -0.5, 0.0, 0.5]);
    assert!(Tensor::arange(0.0, 1.0, 0.0, DType::F32).is_err());
    assert_eq!(vals(&Tensor::full(2.5, &[2, 2], DType::BF16)), vec![2.5; 4]);
    assert!(Tensor::from_vec(vec![1f32, 2.0], &[3]).is_err());
    // seeded RNG: same seed, same values; different seeds differ; normal moments about right
    let r1 = randn(&[10000], 5);
    assert_eq!(vals(&r1), vals(&randn(&[10000], 5)));
    assert_ne!(vals(&r1), vals(&randn(&[10000], 6)));
    let mean = r1.mean_all().unwrap().to_scalar().unwrap();
    let var = r1.var(&[0], true).unwrap().to_scalar().unwrap();
    assert!(mean.abs() < 0.05 && (var - 1.0).abs() < 0.05, "mean {mean} var {var}");
    let u = rand(&[10000], -1.0, 3.0, 7);
    let uv = vals(&u);
    assert!(uv.iter().all(|&v| (-1.0..3.0).contains(&v)));

    // casts round to nearest representable: compare with the half crate's conversion
    let x = randn(&[5, 9], 41).mul_scalar(100.0).unwrap();
    for dt in [DType::F16, DType::BF16] {
        let h = x.to_dtype(dt).unwrap();
        assert_eq!(h.dtype(), dt);
        let back = h.to_dtype(DType::F32).unwrap();
        let want: Vec<f64> = x
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&v| if dt == DType::F16 { half::f16::from_f32(v).to_f64() } else { half::bf16::from_f32(v).to_f64() })
            .collect();
        assert_eq!(vals(&back), want);
    }
    let i = x.to_dtype(DType::I64).unwrap();
    let want: Vec<i64> = x.to_vec::<f32>().unwrap().iter().map(|&v| v as i64).collect();
    assert_eq!(i.to_vec::<i64>().unwrap(), want);
    // f16 compute path: ops on half tensors compute in f32 and round once
    let hx = x.to_dtype(DType::F16).unwrap();
    let hy = hx.mul(&hx).unwrap();
    assert_eq!(hy.dtype(), DType::F16);
    let want: Vec<f64> = vals(&hx).iter().map(|v| half::f16::from_f64(v * v).to_f64()).collect();
    assert_close(&vals(&hy), &want, 0.0, 1e-3, "f16 mul");
    // the cast's gradient is the identity (converted back to the input dtype)
    let v = randn(&[4], 42).requires_grad();
    let g = v.to_dtype(DType::F16).unwrap().mul_scalar(3.0).unwrap().sum_all().unwrap().backward().unwrap();
    let gv = g.get(&v).unwrap();
    assert_eq!(gv.dtype(), DType::F32);
    assert_eq!(vals(gv), vec![3.0; 4]);
}

#[test]
fn geglu_is_the_value_half_times_gelu_of_the_gate_half() {
    // [2, 3, 10]: value halves [.., :5], gates [.., 5:]; against the f64 erf GELU, and the fused
    // pass equals the recorded ops (chunk, gelu, mul) bit for bit in f32.
    let x = randn(&[2, 3, 10], 7);
    let y = x.geglu().unwrap();
    assert_eq!(y.shape(), &[2, 3, 5]);
    let xv = x.to_vec_f64().unwrap();
    let want: Vec<f64> = (0..30).map(|i| xv[(i / 5) * 10 + i % 5] * unary_ref(UnaryOp::GeluErf, xv[(i / 5) * 10 + 5 + i % 5])).collect();
    assert_close(&y.to_vec_f64().unwrap(), &want, 1e-6, 1e-6, "geglu vs f64");
    let parts = x.chunk(2, -1).unwrap();
    let unfused = parts[0].mul(&parts[1].gelu().unwrap()).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), unfused.to_vec::<f32>().unwrap(), "fused and recorded ops differ");
    // A strided input (a transposed view) reads the same values.
    let xt = x.transpose(0, 1).unwrap();
    assert_eq!(xt.geglu().unwrap().to_vec_f64().unwrap(), xt.contiguous().unwrap().geglu().unwrap().to_vec_f64().unwrap());
    // With a gradient wanted it records the ops: d/dx of sum(geglu(x)) vs finite differences.
    grad_check(|t| t[0].geglu(), &[x.clone()], "geglu");
    // An odd last dim has no halves.
    let err = randn(&[2, 7], 8).geglu().unwrap_err().to_string();
    assert!(err.contains("geglu") && err.contains("even"), "{err}");
    // linear_geglu is linear then geglu (the CPU's path; CUDA fuses the gate into its product),
    // with gradients through it, and errors from either half.
    let (x, w, b) = (randn(&[2, 3, 6], 9), randn(&[8, 6], 10), randn(&[8], 11));
    let fused = x.linear_geglu(&w, Some(&b)).unwrap();
    assert_eq!(fused.shape(), &[2, 3, 4]);
    assert_eq!(vals(&fused), vals(&x.linear(&w, Some(&b)).unwrap().geglu().unwrap()));
    grad_check(|t| t[0].linear_geglu(&t[1], Some(&t[2])), &[x.clone(), w.clone(), b.clone()], "linear_geglu");
    let odd = x.linear_geglu(&randn(&[7, 6], 12), None).unwrap_err().to_string();
    assert!(odd.contains("geglu") && odd.contains("even"), "{odd}");
}
