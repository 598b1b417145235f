//! conv2d / conv_transpose2d: forward against direct f64 loops, backward against the same loops
//! and against finite differences, low-precision inputs, and argument errors.

mod common;

use common::{assert_close, grad_check, randn, strided_copy, vals};
use ldm_engine::tensor::conv::{Conv2dParams, ConvTranspose2dParams};
use ldm_engine::{DType, Tensor};

/// Direct convolution in f64, written from the definition (torch.nn.functional.conv2d):
/// y[n,o,oy,ox] = b[o] + Σ_{c,ki,kj} x[n, g·Cg+c, oy·s−p+ki·d, ox·s−p+kj·d] · w[o,c,ki,kj].
fn ref_conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: Conv2dParams) -> (Vec<f64>, Vec<usize>) {
    let (xv, wv) = (vals(x), vals(w));
    let bv = b.map(vals);
    let [n, c, h, wd]: [usize; 4] = x.shape().try_into().unwrap();
    let [o, cg, kh, kw]: [usize; 4] = w.shape().try_into().unwrap();
    let og = o / p.groups;
    let ho = (h + 2 * p.padding.0 - p.dilation.0 * (kh - 1) - 1) / p.stride.0 + 1;
    let wo = (wd + 2 * p.padding.1 - p.dilation.1 * (kw - 1) - 1) / p.stride.1 + 1;
    let mut y = vec![0f64; n * o * ho * wo];
    for ni in 0..n {
        for oc in 0..o {
            let gi = oc / og;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bv.as_ref().map_or(0.0, |b| b[oc]);
                    for ci in 0..cg {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let iy = (oy * p.stride.0 + ki * p.dilation.0) as isize - p.padding.0 as isize;
                                let ix = (ox * p.stride.1 + kj * p.dilation.1) as isize - p.padding.1 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xc = gi * cg + ci;
                                acc += xv[((ni * c + xc) * h + iy as usize) * wd + ix as usize] * wv[((oc * cg + ci) * kh + ki) * kw + kj];
                            }
                        }
                    }
                    y[((ni * o + oc) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    (y, vec![n, o, ho, wo])
}

/// Direct transposed convolution in f64 as a scatter (torch.nn.functional.conv_transpose2d):
/// every x[n,ci,iy,ix] adds x·w[ci,oc,ki,kj] at y[n, g·Cog+oc, iy·s−p+ki·d, ix·s−p+kj·d].
fn ref_conv_transpose2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: ConvTranspose2dParams) -> (Vec<f64>, Vec<usize>) {
    let (xv, wv) = (vals(x), vals(w));
    let [n, c, h, wd]: [usize; 4] = x.shape().try_into().unwrap();
    let [_, cog, kh, kw]: [usize; 4] = w.shape().try_into().unwrap();
    let (cg, o) = (c / p.groups, cog * p.groups);
    let ho = (h - 1) * p.stride.0 + p.dilation.0 * (kh - 1) + p.output_padding.0 + 1 - 2 * p.padding.0;
    let wo = (wd - 1) * p.stride.1 + p.dilation.1 * (kw - 1) + p.output_padding.1 + 1 - 2 * p.padding.1;
    let mut y = vec![0f64; n * o * ho * wo];
    if let Some(b) = b {
        let bv = vals(b);
        y.iter_mut().enumerate().for_each(|(i, v)| *v = bv[(i / (ho * wo)) % o]);
    }
    for ni in 0..n {
        for ci in 0..c {
            let gi = ci / cg;
            for iy in 0..h {
                for ix in 0..wd {
                    let xval = xv[((ni * c + ci) * h + iy) * wd + ix];
                    for oc in 0..cog {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let oy = (iy * p.stride.0 + ki * p.dilation.0) as isize - p.padding.0 as isize;
                                let ox = (ix * p.stride.1 + kj * p.dilation.1) as isize - p.padding.1 as isize;
                                if oy < 0 || ox < 0 || oy >= ho as isize || ox >= wo as isize {
                                    continue;
                                }
                                let yc = gi * cog + oc;
                                y[((ni * o + yc) * ho + oy as usize) * wo + ox as usize] += xval * wv[((ci * cog + oc) * kh + ki) * kw + kj];
                            }
                        }
                    }
                }
            }
        }
    }
    (y, vec![n, o, ho, wo])
}

/// f32 accumulation over K = Cg·KH·KW products of O(1) values: the rounding error grows like
/// sqrt(K)·eps·|terms|, so atol 1e-4·sqrt(K) is generous yet far below any indexing bug (O(1)).
fn tol(k: usize) -> f64 {
    1e-4 * (k as f64).sqrt()
}

fn p2(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dParams {
    Conv2dParams { stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation), groups }
}

#[test]
fn conv2d_forward_matches_direct_loops() {
    // (c_in, c_out, k, stride, padding, dilation, groups) on N=2, 5×7 images (odd, non-square).
    let cases = [
        (3, 4, 3, 1, 1, 1, 1),
        (3, 4, 3, 1, 0, 1, 1),
        (3, 4, 3, 2, 1, 1, 1),
        (3, 4, 3, 2, 2, 1, 1),
        (3, 5, 3, 1, 2, 2, 1),
        (4, 6, 3, 1, 1, 1, 2),
        (4, 6, 3, 2, 1, 2, 2),
        (3, 4, 1, 1, 0, 1, 1),
        (3, 4, 1, 2, 0, 1, 1),
        (3, 4, 1, 1, 1, 1, 1),
        (4, 6, 1, 1, 0, 1, 2),
        (6, 6, 3, 1, 1, 1, 6),
        (2, 3, 5, 1, 2, 1, 1),
    ];
    for (i, &(ci, co, k, s, pad, d, g)) in cases.iter().enumerate() {
        let x = randn(&[2, ci, 5, 7], 10 + i as u64);
        let w = randn(&[co, ci / g, k, k], 100 + i as u64);
        let b = randn(&[co], 200 + i as u64);
        let p = p2(s, pad, d, g);
        for bias in [None, Some(&b)] {
            let y = x.conv2d(&w, bias, p).unwrap();
            let (want, shape) = ref_conv2d(&x, &w, bias, p);
            assert_eq!(y.shape(), &shape[..], "case {i}");
            assert_close(&vals(&y), &want, tol(ci / g * k * k), 0.0, &format!("conv2d case {i} bias {}", bias.is_some()));
        }
    }
}

#[test]
fn conv2d_rectangular_params_and_strided_inputs() {
    // Different stride/padding/dilation per axis, and inputs that are transposed views.
    let p = Conv2dParams { stride: (2, 1), padding: (1, 2), dilation: (1, 2), groups: 1 };
    let x = randn(&[2, 3, 6, 5], 1);
    let w = randn(&[4, 3, 3, 2], 2);
    let b = randn(&[4], 3);
    let (xs, ws) = (strided_copy(&x), strided_copy(&w));
    assert!(!xs.is_contiguous() && !ws.is_contiguous());
    let y = xs.conv2d(&ws, Some(&b), p).unwrap();
    let (want, shape) = ref_conv2d(&x, &w, Some(&b), p);
    assert_eq!(y.shape(), &shape[..]);
    assert_close(&vals(&y), &want, tol(18), 0.0, "strided conv2d");
}

#[test]
fn conv_transpose2d_forward_matches_scatter_loops() {
    // (c_in, c_out, k, stride, padding, output_padding, dilation, groups)
    let cases = [
        (3, 4, 3, 2, 1, 1, 1, 1),
        (3, 4, 3, 1, 0, 0, 1, 1),
        (4, 6, 3, 2, 1, 1, 1, 2),
        (3, 4, 4, 2, 1, 0, 1, 1),
        (3, 2, 3, 1, 2, 1, 2, 1),
        (3, 4, 1, 1, 0, 0, 1, 1),
        (4, 4, 3, 3, 2, 2, 1, 4),
    ];
    for (i, &(ci, co, k, s, pad, op, d, g)) in cases.iter().enumerate() {
        let x = randn(&[2, ci, 5, 7], 30 + i as u64);
        let w = randn(&[ci, co / g, k, k], 130 + i as u64);
        let b = randn(&[co], 230 + i as u64);
        let p = ConvTranspose2dParams { stride: (s, s), padding: (pad, pad), output_padding: (op, op), dilation: (d, d), groups: g };
        for bias in [None, Some(&b)] {
            let y = x.conv_transpose2d(&w, bias, p).unwrap();
            let (want, shape) = ref_conv_transpose2d(&x, &w, bias, p);
            assert_eq!(y.shape(), &shape[..], "case {i}");
            // Each output sums at most Cg·KH·KW products, like a forward conv.
            assert_close(&vals(&y), &want, tol(ci / g * k * k), 0.0, &format!("conv_transpose2d case {i}"));
        }
    }
    let xs = strided_copy(&randn(&[1, 3, 4, 6], 7));
    let w = randn(&[3, 2, 3, 3], 8);
    let p = ConvTranspose2dParams { stride: (2, 2), padding: (1, 1), output_padding: (1, 1), ..Default::default() };
    let (want, _) = ref_conv_transpose2d(&xs, &w, None, p);
    assert_close(&vals(&xs.conv_transpose2d(&w, None, p).unwrap()), &want, tol(27), 0.0, "strided conv_transpose2d");
}

/// On an image large enough that the im2col buffer is split into several tiles (K·P·4 bytes
/// above the budget; at 4 MiB, three tiles of 768 pixels, so tile edges fall mid-row), forward and both
/// backward passes against the direct loops. With L = Σ y·r: dL/dx = conv_transpose2d(r, w)
/// (the scatter reference, w read as [C_in_t, C_out_t, KH, KW]) and
/// dL/dw[o,c,ki,kj] = Σ r[n,o,oy,ox]·x[n,c,oy+ki−1,ox+kj−1] (a direct loop below).
#[test]
fn tiled_sizes_forward_and_backward_match_direct_loops() {
    let (ci, co, h, wd) = (128, 3, 48, 45);
    assert!(ci * 9 * h * wd * 4 > ldm_engine::backend::cpu::conv::COL_BUDGET, "size must need more than one tile");
    let x = randn(&[1, ci, h, wd], 41);
    let w = randn(&[co, ci, 3, 3], 42).mul_scalar(0.1).unwrap();
    let p = p2(1, 1, 1, 1);
    let y = x.conv2d(&w, None, p).unwrap();
    let (want, shape) = ref_conv2d(&x, &w, None, p);
    assert_eq!(y.shape(), &shape[..]);
    assert_close(&vals(&y), &want, tol(ci * 9) * 0.1, 0.0, "tiled conv2d forward");

    let r = randn(y.shape(), 43);
    let (xv, wv) = (x.requires_grad(), w.requires_grad());
    let grads = xv.conv2d(&wv, None, p).unwrap().mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let pt = ConvTranspose2dParams { stride: (1, 1), padding: (1, 1), ..Default::default() };
    // dx sums Co·9 = 27 products of r·w (|w| ~ 0.1).
    let (dx_want, _) = ref_conv_transpose2d(&r, &w, None, pt);
    assert_close(&vals(grads.get(&xv).unwrap()), &dx_want, tol(27), 0.0, "tiled conv2d dx");
    let (xf, rf) = (vals(&x), vals(&r));
    let mut dw_want = vec![0f64; co * ci * 9];
    for o in 0..co {
        for c in 0..ci {
            for ki in 0..3 {
                for kj in 0..3 {
                    let mut acc = 0.0;
                    for oy in 0..h {
                        for ox in 0..wd {
                            let (iy, ix) = ((oy + ki) as isize - 1, (ox + kj) as isize - 1);
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                acc += rf[(o * h + oy) * wd + ox] * xf[(c * h + iy as usize) * wd + ix as usize];
                            }
                        }
                    }
                    dw_want[((o * ci + c) * 3 + ki) * 3 + kj] = acc;
                }
            }
        }
    }
    // dw sums H·W = 2160 products of O(1) values.
    assert_close(&vals(grads.get(&wv).unwrap()), &dw_want, tol(h * wd), 0.0, "tiled conv2d dw");
}

#[test]
fn low_precision_inputs_keep_their_dtype() {
    // Reference on the rounded inputs, so only the output rounding and f32 accumulation remain:
    // one final rounding costs ≤ 2^-11 (f16) / 2^-8 (bf16) relative; rtol is twice that.
    let p = p2(2, 1, 1, 1);
    for (dt, rtol) in [(DType::F16, 1e-3), (DType::BF16, 8e-3)] {
        let x = randn(&[2, 3, 5, 7], 51).to_dtype(dt).unwrap();
        let w = randn(&[4, 3, 3, 3], 52).to_dtype(dt).unwrap();
        let b = randn(&[4], 53).to_dtype(dt).unwrap();
        let y = x.conv2d(&w, Some(&b), p).unwrap();
        assert_eq!(y.dtype(), dt);
        let (want, _) = ref_conv2d(&x, &w, Some(&b), p);
        assert_close(&vals(&y), &want, tol(27), rtol, &format!("conv2d {dt:?}"));

        let wt = randn(&[3, 4, 3, 3], 54).to_dtype(dt).unwrap();
        let pt = ConvTranspose2dParams { stride: (2, 2), padding: (1, 1), output_padding: (1, 1), ..Default::default() };
        let yt = x.conv_transpose2d(&wt, Some(&b), pt).unwrap();
        assert_eq!(yt.dtype(), dt);
        let (want, _) = ref_conv_transpose2d(&x, &wt, Some(&b), pt);
        assert_close(&vals(&yt), &want, tol(27), rtol, &format!("conv_transpose2d {dt:?}"));
    }
}

// Gradient checks use common::grad_check's finite-difference tolerance (atol 2e-3, rtol 2e-2).
#[test]
fn conv2d_gradients_match_finite_differences() {
    for (i, p) in [p2(1, 1, 1, 1), p2(2, 2, 1, 2), p2(1, 1, 2, 1)].into_iter().enumerate() {
        let x = randn(&[2, 4, 5, 6], 60 + i as u64);
        let w = randn(&[4, 4 / p.groups, 3, 3], 70 + i as u64);
        let b = randn(&[4], 80 + i as u64);
        grad_check(|t| t[0].conv2d(&t[1], Some(&t[2]), p), &[x, w, b], &format!("conv2d {p:?}"));
    }
    // 1×1 (the no-im2col path).
    let (x, w) = (randn(&[2, 3, 4, 5], 90), randn(&[5, 3, 1, 1], 91));
    grad_check(|t| t[0].conv2d(&t[1], None, p2(1, 0, 1, 1)), &[x, w], "conv2d 1x1");
}

#[test]
fn conv_transpose2d_gradients_match_finite_differences() {
    let ps = [
        ConvTranspose2dParams { stride: (2, 2), padding: (1, 1), output_padding: (1, 1), ..Default::default() },
        ConvTranspose2dParams { stride: (1, 2), padding: (0, 1), output_padding: (0, 0), dilation: (2, 1), groups: 2 },
    ];
    for (i, p) in ps.into_iter().enumerate() {
        let x = randn(&[2, 4, 4, 5], 160 + i as u64);
        let w = randn(&[4, 6 / p.groups, 3, 3], 170 + i as u64);
        let b = randn(&[6], 180 + i as u64);
        grad_check(|t| t[0].conv_transpose2d(&t[1], Some(&t[2]), p), &[x, w, b], &format!("conv_transpose2d {p:?}"));
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let x = randn(&[1, 4, 5, 5], 1);
    let w = randn(&[2, 3, 3, 3], 2);
    let err = |r: ldm_engine::Result<Tensor>| r.expect_err("should be an error").to_string();
    // Weight expects 3 input channels, x has 4.
    assert!(err(x.conv2d(&w, None, p2(1, 1, 1, 1))).contains("conv2d"));
    // groups 3 does not divide 4 input channels.
    assert!(err(x.conv2d(&randn(&[3, 1, 3, 3], 3), None, p2(1, 1, 1, 3))).contains("groups"));
    // Kernel (5, dilated to 9) larger than the padded 5×5 input.
    assert!(err(x.conv2d(&randn(&[2, 4, 5, 5], 4), None, p2(1, 1, 2, 1))).contains("exceeds"));
    assert!(err(x.conv2d(&randn(&[2, 4, 7, 7], 4), None, p2(1, 0, 1, 1))).contains("exceeds"));
    // Zero stride, wrong ranks, wrong bias length, mixed dtypes.
    assert!(x.conv2d(&randn(&[2, 4, 3, 3], 5), None, p2(0, 1, 1, 1)).is_err());
    assert!(randn(&[4, 5, 5], 6).conv2d(&randn(&[2, 4, 3, 3], 5), None, p2(1, 1, 1, 1)).is_err());
    assert!(x.conv2d(&randn(&[2, 4, 3], 5), None, p2(1, 1, 1, 1)).is_err());
    assert!(x.conv2d(&randn(&[2, 4, 3, 3], 5), Some(&randn(&[3], 7)), p2(1, 1, 1, 1)).is_err());
    assert!(x.conv2d(&randn(&[2, 4, 3, 3], 5).to_dtype(DType::F16).unwrap(), None, p2(1, 1, 1, 1)).is_err());

    let tp = |s: usize, pad: usize, op: usize, g: usize| ConvTranspose2dParams {
        stride: (s, s),
        padding: (pad, pad),
        output_padding: (op, op),
        dilation: (1, 1),
        groups: g,
    };
    // conv_transpose2d: weight's first dim must be x's channels; output_padding < stride;
    // groups must divide channels; padding may not eat the whole output.
    assert!(x.conv_transpose2d(&randn(&[3, 2, 3, 3], 8), None, tp(2, 1, 1, 1)).is_err());
    assert!(err(x.conv_transpose2d(&randn(&[4, 2, 3, 3], 8), None, tp(2, 1, 2, 1))).contains("output_padding"));
    assert!(err(x.conv_transpose2d(&randn(&[4, 2, 3, 3], 8), None, tp(1, 1, 0, 3))).contains("groups"));
    assert!(x.conv_transpose2d(&randn(&[4, 2, 1, 1], 8), None, tp(1, 3, 0, 1)).is_err());
    assert!(x.conv_transpose2d(&randn(&[4, 2, 3, 3], 8), Some(&randn(&[4], 9)), tp(2, 1, 1, 1)).is_err());
}

#[test]
fn untracked_bias_is_fused_and_gradients_still_reach_x_and_w() {
    // With x and w tracked but the bias a plain tensor, the bias goes into the kernel's output
    // buffer (no separate add is recorded); the conv's own gradients must not depend on it.
    let (x, w, b) = (randn(&[2, 3, 5, 7], 300), randn(&[4, 3, 3, 3], 301), randn(&[4], 302));
    let p = p2(2, 1, 1, 1);
    let r = randn(&[2, 4, 3, 4], 303);
    let grads = |bias: Option<&Tensor>| {
        let (xv, wv) = (x.requires_grad(), w.requires_grad());
        let y = xv.conv2d(&wv, bias, p).unwrap();
        let gs = y.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
        (vals(&y), vals(gs.get(&xv).unwrap()), vals(gs.get(&wv).unwrap()))
    };
    let (y_b, gx_b, gw_b) = grads(Some(&b));
    let (_, gx, gw) = grads(None);
    let (want, _) = ref_conv2d(&x, &w, Some(&b), p);
    assert_close(&y_b, &want, tol(27), 0.0, "fused-bias forward");
    // Same kernels on the same inputs: identical up to the order of float additions.
    assert_close(&gx_b, &gx, 1e-6, 0.0, "dx with vs without fused bias");
    assert_close(&gw_b, &gw, 1e-6, 0.0, "dw with vs without fused bias");
}

/// Small planes with a batch take the stacked-images path (several images' column matrices side
/// by side in one product, in chunks: here 8 + 2 images); every image must come out as it does
/// alone (the per-image path), forward and both gradients.
#[test]
fn stacked_small_plane_batches_match_one_image_at_a_time() {
    let p = Conv2dParams { padding: (1, 1), ..Default::default() };
    let (x, w, b) = (randn(&[10, 64, 15, 15], 201), randn(&[24, 64, 3, 3], 202), randn(&[24], 203));
    let (x, w) = (x.requires_grad(), w.requires_grad());
    let y = x.conv2d(&w, Some(&b), p).unwrap();
    let weights = randn(&[10, 24, 15, 15], 204);
    let grads = y.mul(&weights).unwrap().sum_all().unwrap().backward().unwrap();
    let mut dw_sum = vec![0f64; w.numel()];
    for i in 0..10 {
        let xi = x.narrow(0, i, 1).unwrap().contiguous().unwrap().detach().requires_grad();
        let yi = xi.conv2d(&w, Some(&b), p).unwrap();
        assert_close(&vals(&y.narrow(0, i, 1).unwrap()), &vals(&yi), 1e-5, 1e-5, "forward");
        let gi = yi.mul(&weights.narrow(0, i, 1).unwrap()).unwrap().sum_all().unwrap().backward().unwrap();
        assert_close(&vals(&grads.get(&x).unwrap().narrow(0, i, 1).unwrap()), &vals(gi.get(&xi).unwrap()), 1e-5, 1e-5, "dx");
        dw_sum.iter_mut().zip(vals(gi.get(&w).unwrap())).for_each(|(a, v)| *a += v);
    }
    assert_close(&vals(grads.get(&w).unwrap()), &dw_sum, 1e-4, 1e-4, "dw");
}
