//! The f16/bf16 tensor-core kernels (kernels/conv_tc.cu, gemm_tc.cu, attention.cu) and the
//! layouts the CUDA backend keeps for them (channels-last weights and group_norm outputs),
//! checked on every available device against the CPU in f32 (tests/common/device_check.rs).
//! A module of tests/device_ops.rs: one test binary for the GPU bundle (tools/gpu_check.sh).

use crate::common;
use crate::common::device_check::{check, input, DTYPES};
use crate::common::randn;
use crate::on_devices;
use ldm_engine::{DType, Device, Tensor};

// The f16/bf16 tensor-core kernels (kernels/conv_tc.cu, kernels/attention.cu) on the SD shape
// classes, past one tile in every GEMM dimension: 320/640 channels, k ranges of many 32-deep
// slices, split-K weight gradients, 1024 queries, 77 text keys, head dims 40/80/160.
on_devices!(fn tensor_core_conv_and_flash_attention_on_sd_shape_classes(dev) {
    use ldm_engine::tensor::conv::Conv2dParams;
    let p = |s: usize, pad: usize| Conv2dParams { stride: (s, s), padding: (pad, pad), dilation: (1, 1), groups: 1 };
    // 3×3 on the 64×64 tile; 1×1 (weight gradient from NCHW planes); stride 2; 128² pixels, whose
    // forward and backward data take the 128×128 tile (128 blocks)
    let convs = [
        ([2usize, 320, 16, 16], [320usize, 320, 3, 3], p(1, 1)),
        ([1, 640, 8, 8], [320, 640, 1, 1], p(1, 0)),
        ([1, 128, 17, 17], [128, 128, 3, 3], p(2, 0)),
        ([1, 32, 128, 128], [64, 32, 3, 3], p(1, 1)),
    ];
    for dtype in [DType::F16, DType::BF16] {
        for (k, (xs, ws, cp)) in convs.iter().enumerate() {
            check(&format!("tensor-core conv2d {xs:?} * {ws:?}"), dev, dtype, |d, dt| {
                input(xs, 140 + k as u64, dt, d).conv2d(&input(ws, 141, dt, d).mul_scalar(0.05).unwrap(), Some(&input(&[ws[0]], 142, dt, d)), *cp).unwrap()
            });
            // The residual fused into the epilogue (ResNet blocks' skip connection).
            check(&format!("tensor-core conv2d_add {xs:?} * {ws:?}"), dev, dtype, |d, dt| {
                let x = input(xs, 153 + k as u64, dt, d);
                let y_shape = x.conv2d(&input(ws, 141, dt, d), None, *cp).unwrap().shape().to_vec();
                x.conv2d_add(&input(ws, 141, dt, d).mul_scalar(0.05).unwrap(), Some(&input(&[ws[0]], 142, dt, d)), *cp, &input(&y_shape, 154, dt, d)).unwrap()
            });
            for which in ["x", "w"] {
                check(&format!("d tensor-core conv2d {xs:?} / d {which}"), dev, dtype, |d, dt| {
                    let x = input(xs, 143, dt, d).requires_grad();
                    let w = input(ws, 144, dt, d).mul_scalar(0.05).unwrap().requires_grad();
                    let y = x.conv2d(&w, None, *cp).unwrap();
                    let g = y.mul(&input(y.shape(), 145, dt, d)).unwrap().sum_all().unwrap().backward().unwrap();
                    g.get(if which == "x" { &x } else { &w }).unwrap().clone()
                });
            }
        }
        for (b, h, lq, lk, dh) in [(1usize, 4usize, 1024usize, 1024usize, 40usize), (2, 4, 256, 77, 80), (1, 2, 256, 256, 160), (1, 2, 200, 77, 64)] {
            check(&format!("flash attention {lq}x{lk} d{dh}"), dev, dtype, |d, dt| {
                // q read through a [B, L, H, D] → [B, H, L, D] view, as the models make it.
                let q = input(&[b, lq, h, dh], 146, dt, d).transpose(1, 2).unwrap();
                let (k, v) = (input(&[b, h, lk, dh], 147, dt, d), input(&[b, h, lk, dh], 148, dt, d));
                Tensor::scaled_dot_product_attention(&q, &k, &v, None, None).unwrap()
            });
            if dh > 128 {
                continue; // no flash backward at head dim 160: the recorded ops carry it
            }
            for which in 0..3 {
                check(&format!("d flash attention {lq}x{lk} d{dh} / d input {which}"), dev, dtype, |d, dt| {
                    let q = input(&[b, lq, h, dh], 149, dt, d).transpose(1, 2).unwrap().requires_grad();
                    let k = input(&[b, h, lk, dh], 150, dt, d).requires_grad();
                    let v = input(&[b, h, lk, dh], 151, dt, d).requires_grad();
                    let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None, None).unwrap();
                    let g = y.mul(&input(y.shape(), 152, dt, d)).unwrap().sum_all().unwrap().backward().unwrap();
                    g.get([&q, &k, &v][which]).unwrap().clone()
                });
            }
        }
    }
});

// The CUDA conv keeps channels-last copies of inference weights (conv_tc.rs WeightLayouts): a
// second call must reuse it to the bit, and neither a new weight that the allocator places in a
// freed weight's memory nor a transposed view of a cached weight may be served a stale layout.
on_devices!(fn conv_weight_layouts_are_reused_and_never_stale(dev) {
    use ldm_engine::tensor::conv::Conv2dParams;
    let p = Conv2dParams { padding: (1, 1), ..Default::default() };
    let x = input(&[1, 16, 6, 6], 170, DType::F16, dev);
    let weight = |seed: u64| input(&[16, 16, 3, 3], seed, DType::F32, Device::Cpu).mul_scalar(0.1).unwrap().to_dtype(DType::F16).unwrap().to_device(dev).unwrap();
    let conv = |w: &Tensor| x.conv2d(w, None, p).unwrap().to_vec_f64().unwrap();
    let w1 = weight(171);
    let (first, again) = (conv(&w1), conv(&w1));
    assert_eq!(first, again, "the same weight twice on {dev:?}");
    drop(w1);
    let w2 = weight(172); // same size: the caching allocator hands back w1's block
    let (second, fresh) = (conv(&w2), conv(&w2.copy().unwrap()));
    assert_eq!(second, fresh, "a new weight in a freed weight's memory on {dev:?}");
    assert_ne!(second, first, "the two weights differ");
    // A transposed view of a square weight: same storage, offset and shape, other strides.
    let swapped = w2.transpose(0, 1).unwrap();
    assert_eq!(conv(&swapped), conv(&swapped.contiguous().unwrap()), "a transposed view of a cached weight on {dev:?}");
});

// Loaded half-precision conv weights on a GPU are stored channels-last once (nn::VarBuilder →
// conv_tc::store_channels_last): same shape, permuted strides, read by the conv kernel as they are.
// The layer convolves like the CPU's; a 1×1 kernel (already that layout) and a 4-channel input
// (the NCHW kernel's) stay as they were loaded.
on_devices!(fn loaded_half_conv_weights_are_stored_channels_last(dev) {
    use ldm_engine::nn::{Conv2d, Module, VarBuilder};
    use ldm_engine::tensor::conv::Conv2dParams;
    let p = Conv2dParams { padding: (1, 1), ..Default::default() };
    for dtype in [DType::F16, DType::BF16] {
        let load = |d: Device, dt: DType, c_in: usize, k: usize| {
            let weights = [("conv.weight", randn(&[24, c_in, k, k], 180).mul_scalar(0.1).unwrap()), ("conv.bias", randn(&[24], 181))];
            let vb = VarBuilder::from_tensors(weights.into_iter().map(|(n, t)| (n.to_string(), t)).collect(), dt).on_device(d);
            Conv2d::new(&vb.pp("conv"), c_in, 24, k, if k == 1 { Conv2dParams::default() } else { p }, true).unwrap()
        };
        let stored = load(dev, dtype, 16, 3).weight;
        let channels_last = stored.permute(&[0, 2, 3, 1]).unwrap().is_contiguous();
        assert_eq!(channels_last && !stored.is_contiguous(), dev.is_cuda(), "3×3 weight layout on {dev:?}: strides {:?}", stored.layout().strides());
        assert!(load(dev, dtype, 16, 1).weight.is_contiguous() && load(dev, dtype, 4, 3).weight.is_contiguous(), "1×1 and 4-channel weights stay as loaded");
        for (c_in, k) in [(16, 3), (16, 1), (4, 3)] {
            check(&format!("loaded conv {c_in}→24, {k}×{k}"), dev, dtype, |d, dt| load(d, dt, c_in, k).forward(&input(&[2, c_in, 9, 7], 182, dt, d)).unwrap());
        }
    }
});

// In half-precision inference on a GPU, group_norm(+SiLU) over channels the channels-last conv
// reads is written channels-last (kernels/norm.cu gn_apply_nhwc): the same values as the CPU's,
// and the conv after it reads them without a transpose. A recorded (training) call stays NCHW.
on_devices!(fn half_group_norm_is_written_channels_last_for_the_conv(dev) {
    use ldm_engine::tensor::conv::Conv2dParams;
    let p = Conv2dParams { padding: (1, 1), ..Default::default() };
    for dtype in [DType::F16, DType::BF16] {
        let norm = |d: Device, dt: DType| input(&[2, 64, 9, 11], 190, dt, d).group_norm_silu(8, Some(&input(&[64], 191, dt, d)), Some(&input(&[64], 192, dt, d)), 1e-5).unwrap();
        let y = norm(dev, dtype);
        assert_eq!(y.permute(&[0, 2, 3, 1]).unwrap().is_contiguous() && !y.is_contiguous(), dev.is_cuda(), "layout on {dev:?}: {:?}", y.layout().strides());
        check("group_norm_silu, channels-last output", dev, dtype, norm);
        check("conv2d of a channels-last group_norm", dev, dtype, |d, dt| norm(d, dt).conv2d(&input(&[32, 64, 3, 3], 193, dt, d).mul_scalar(0.05).unwrap(), None, p).unwrap());
        check("a channels-last group_norm plus a tensor", dev, dtype, |d, dt| norm(d, dt).add(&input(&[2, 64, 9, 11], 194, dt, d)).unwrap());
        let recorded = input(&[2, 64, 9, 11], 190, dtype, dev).requires_grad().group_norm(8, None, None, 1e-5).unwrap();
        assert!(recorded.is_contiguous(), "a recorded group_norm on {dev:?} keeps NCHW");
        // the norm and x again (a ResBlock's skip conv input): on CUDA a channels-last copy of x
        // from the same launch, equal to x; elsewhere x itself
        let both = |d: Device, dt: DType| input(&[2, 64, 9, 11], 195, dt, d).group_norm_silu_and_input(8, Some(&input(&[64], 191, dt, d)), Some(&input(&[64], 192, dt, d)), 1e-5).unwrap();
        let (_, x_again) = both(dev, dtype);
        assert_eq!(x_again.permute(&[0, 2, 3, 1]).unwrap().is_contiguous(), dev.is_cuda(), "x's layout on {dev:?}: {:?}", x_again.layout().strides());
        assert_eq!(x_again.to_vec_f64().unwrap(), input(&[2, 64, 9, 11], 195, dtype, dev).to_vec_f64().unwrap(), "x again on {dev:?}");
        check("group_norm_silu_and_input: the norm", dev, dtype, |d, dt| both(d, dt).0);
        check("1x1 conv of group_norm_silu_and_input's x", dev, dtype, |d, dt| {
            both(d, dt).1.conv2d(&input(&[32, 64, 1, 1], 196, dt, d).mul_scalar(0.1).unwrap(), Some(&input(&[32], 197, dt, d)), Conv2dParams::default()).unwrap()
        });
    }
});

// The f16/bf16 tensor-core GEMM (kernels/gemm_tc.cu) on the models' products: Linear layers with
// the bias fused (inference) at 320 and 1280 input features, the cross-attention key projection
// of a 768-wide text context, attention's Q·Kᵀ and P·V with k = 90 (no 16-byte path), a view
// whose offset breaks the 16-byte alignment, and Linear's gradients (recorded, so unfused: dY·W
// and dYᵀ·X read through transposed views).
on_devices!(fn tensor_core_gemm_on_model_products(dev) {
    for dtype in [DType::F16, DType::BF16] {
        for (k, (xs, n)) in [([2usize, 150, 320], 320usize), ([1, 70, 1280], 320), ([2, 77, 768], 320)].into_iter().enumerate() {
            check(&format!("tensor-core linear {xs:?} -> {n}, fused bias"), dev, dtype, |d, dt| {
                let w = input(&[n, xs[2]], 161 + k as u64, dt, d).mul_scalar(0.05).unwrap();
                input(&xs, 160, dt, d).linear(&w, Some(&input(&[n], 162, dt, d))).unwrap()
            });
        }
        check("tensor-core Q·Kᵀ", dev, dtype, |d, dt| input(&[16, 77, 40], 163, dt, d).matmul(&input(&[16, 90, 40], 164, dt, d).transpose(1, 2).unwrap()).unwrap());
        check("tensor-core P·V", dev, dtype, |d, dt| input(&[16, 77, 90], 165, dt, d).matmul(&input(&[16, 90, 40], 166, dt, d)).unwrap());
        check("tensor-core linear on a misaligned view", dev, dtype, |d, dt| {
            let x = input(&[40, 73], 167, dt, d).narrow(1, 1, 72).unwrap();
            x.linear(&input(&[24, 72], 168, dt, d), Some(&input(&[24], 169, dt, d))).unwrap()
        });
        for which in 0..3 {
            check(&format!("d tensor-core linear / d input {which}"), dev, dtype, |d, dt| {
                let x = input(&[3, 37, 72], 170, dt, d).requires_grad();
                let w = input(&[40, 72], 171, dt, d).requires_grad();
                let b = input(&[40], 172, dt, d).requires_grad();
                let y = x.linear(&w, Some(&b)).unwrap();
                let g = y.mul(&input(y.shape(), 173, dt, d)).unwrap().sum_all().unwrap().backward().unwrap();
                g.get([&x, &w, &b][which]).unwrap().clone()
            });
        }
    }
});

on_devices!(fn geglu_fused_gate(dev) {
    for dtype in DTYPES {
        // The SD feed-forward's gate: [B, L, 2·inner], read once by the fused kernel.
        check("geglu", dev, dtype, |d, dt| input(&[2, 77, 2 * 40], 155, dt, d).geglu().unwrap());
        // The feed-forward's first product with its gate (Linear::forward_geglu): on CUDA in half
        // precision, large enough for the 128×128 tile, the gate runs in the product's epilogue
        // (gemm_tc_wide_geglu); smaller, and everywhere else, it is the product then the gate.
        for (rows, inner) in [(1024usize, 1024usize), (40, 24)] {
            check(&format!("linear_geglu [{rows}, 64] -> {inner}"), dev, dtype, |d, dt| {
                let w = input(&[2 * inner, 64], 158, dt, d).mul_scalar(0.2).unwrap();
                input(&[2, rows / 2, 64], 159, dt, d).linear_geglu(&w, Some(&input(&[2 * inner], 160, dt, d))).unwrap()
            });
        }
        check("d geglu", dev, dtype, |d, dt| {
            let x = input(&[3, 2 * 9], 156, dt, d).requires_grad();
            let y = x.geglu().unwrap();
            let g = y.mul(&input(y.shape(), 157, dt, d)).unwrap().sum_all().unwrap().backward().unwrap();
            g.get(&x).unwrap().clone()
        });
    }
});

