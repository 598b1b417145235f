//! Memory-bound CUDA kernels against the device's own copy bandwidth (cuMemcpyDtoD): each row is
//! the bytes a kernel must move (inputs read once + output written once) over its time, and that
//! bandwidth as a fraction of the measured copy bandwidth (target ≥ 85%). Shapes are the SD UNet's
//! (group-norm over 320/640/1280 channels at 64²/32²/16², batch 2 with CFG), the SD VAE decoder's
//! (512/256/128 channels at 128²/256²/512², batch 1) and large flat tensors; each group-norm shape
//! also has the driver's copy of the same bytes (small tensors are launch-latency bound).
//! A second table gives the compute-bound ops (GEMM, im2col conv, unfused attention) in TFLOP/s.
//! Without a GPU it prints why and exits 0.
//!
//! cargo bench --bench cuda_bandwidth            (tools/gpu_check.sh runs it on a GPU machine)

use ldm_engine::backend::cuda;
use ldm_engine::{DType, Device, Tensor};

mod gpu_timing;

fn time(dev: &cuda::CudaDevice, f: impl FnMut()) -> f64 {
    gpu_timing::median_seconds(dev, 5, 200, f)
}

fn main() {
    let Some(dev) = gpu_timing::first_device("cuda_bandwidth") else { return };
    let d = Device::Cuda(0);
    let mut rng = rand::rng();
    let randn = |shape: &[usize], dt: DType, rng: &mut rand::rngs::ThreadRng| Tensor::randn(shape, 0.0, 1.0, dt, rng).to_device(d).unwrap();

    // The reference: 256 MiB copied by the driver.
    let big = randn(&[64 << 20], DType::F32, &mut rng);
    let copy_s = time(&dev, || drop(cuda::ops::device_copy(&big).unwrap()));
    let copy_bw = 2.0 * big.numel() as f64 * 4.0 / copy_s / 1e9;

    let mut rows: Vec<(String, String, f64, f64)> = vec![("memcpy DtoD (reference)".into(), "64M f32".into(), copy_s, copy_bw)];
    let mut bench = |name: &str, shape: &str, bytes: usize, f: &mut dyn FnMut()| {
        let s = time(&dev, f);
        rows.push((name.into(), shape.into(), s, bytes as f64 / s / 1e9));
    };

    for dt in [DType::F32, DType::BF16, DType::F16] {
        let es = dt.size_in_bytes();
        let x = randn(&[64 << 20], dt, &mut rng);
        let y = randn(&[64 << 20], dt, &mut rng);
        let n = x.numel();
        bench("copy kernel", &format!("64M {dt}"), 2 * n * es, &mut || drop(cuda::ops::copy_contiguous(&x, None).unwrap()));
        bench("affine", &format!("64M {dt}"), 2 * n * es, &mut || drop(x.affine(0.5, 1.0).unwrap()));
        bench("silu", &format!("64M {dt}"), 2 * n * es, &mut || drop(x.silu().unwrap()));
        bench("gelu (erf)", &format!("64M {dt}"), 2 * n * es, &mut || drop(x.gelu().unwrap()));
        bench("add", &format!("64M {dt}"), 3 * n * es, &mut || drop(x.add(&y).unwrap()));
        let bias = randn(&[1280, 1, 1], dt, &mut rng);
        let act = randn(&[16, 1280, 32, 32], dt, &mut rng);
        bench("add bias (broadcast)", &format!("[16,1280,32,32] {dt}"), 2 * act.numel() * es, &mut || drop(act.add(&bias).unwrap()));
        let sq = randn(&[4096, 4096], dt, &mut rng);
        bench("transpose copy", &format!("[4096,4096] {dt}"), 2 * sq.numel() * es, &mut || drop(sq.t().unwrap().contiguous().unwrap()));
        if dt != DType::F32 {
            let xf = randn(&[64 << 20], DType::F32, &mut rng);
            bench("cast f32 ->", &format!("64M {dt}"), n * (4 + es), &mut || drop(xf.to_dtype(dt).unwrap()));
        }
        // the UNet's levels (batch 2), then the VAE decoder's at a 512² image (batch 1), where
        // the tensors are 16–64 MiB and bandwidth, not launch latency, sets the time; each shape
        // also gets the driver's copy of the same bytes, the best a pass over it can do
        for (n, c, hw) in [(2usize, 320usize, 64usize), (2, 640, 32), (2, 1280, 16), (1, 512, 128), (1, 256, 256), (1, 128, 512)] {
            let x = randn(&[n, c, hw, hw], dt, &mut rng);
            let (w, b) = (randn(&[c], dt, &mut rng), randn(&[c], dt, &mut rng));
            let bytes = 2 * x.numel() * es;
            let shape = format!("[{n},{c},{hw},{hw}] {dt}");
            bench("memcpy DtoD (same bytes)", &shape, bytes, &mut || drop(cuda::ops::device_copy(&x).unwrap()));
            bench("group_norm (32 groups)", &shape, bytes, &mut || drop(x.group_norm(32, Some(&w), Some(&b), 1e-5).unwrap()));
            bench("group_norm + SiLU (fused)", &shape, bytes, &mut || drop(x.group_norm_silu(32, Some(&w), Some(&b), 1e-5).unwrap()));
        }
        let t = randn(&[2 * 4096, 320], dt, &mut rng);
        let (w, b) = (randn(&[320], dt, &mut rng), randn(&[320], dt, &mut rng));
        bench("layer_norm", &format!("[8192,320] {dt}"), 2 * t.numel() * es, &mut || drop(t.layer_norm(Some(&w), Some(&b), 1e-5).unwrap()));
        let s = randn(&[16 * 1024, 4096], dt, &mut rng);
        bench("softmax (last dim)", &format!("[16384,4096] {dt}"), 2 * s.numel() * es, &mut || drop(s.softmax(1).unwrap()));
        bench("sum (last dim)", &format!("[16384,4096] {dt}"), s.numel() * es, &mut || drop(s.sum_keepdim(&[1]).unwrap()));
    }

    // Compute-bound ops, in TFLOP/s (the simple GEMM-based versions; the tensor-core kernels are
    // the next issue's): SD UNet shapes at batch 2.
    let mut flops_rows: Vec<(String, String, f64, f64)> = Vec::new();
    for dt in [DType::F32, DType::BF16] {
        let mut fbench = |name: &str, shape: String, flops: f64, f: &mut dyn FnMut()| {
            let s = time(&dev, f);
            flops_rows.push((name.into(), shape, s, flops / s / 1e12));
        };
        let (a, b) = (randn(&[8192, 1280], dt, &mut rng), randn(&[1280, 1280], dt, &mut rng));
        fbench("matmul", format!("[8192,1280]x[1280,1280] {dt}"), 2.0 * 8192.0 * 1280.0 * 1280.0, &mut || drop(a.matmul(&b).unwrap()));
        for (c, hw) in [(320usize, 64usize), (640, 32), (1280, 16)] {
            let x = randn(&[2, c, hw, hw], dt, &mut rng);
            let w = randn(&[c, c, 3, 3], dt, &mut rng);
            let p = ldm_engine::tensor::conv::Conv2dParams { padding: (1, 1), ..Default::default() };
            let flops = 2.0 * 2.0 * (c * c * 9 * hw * hw) as f64;
            fbench("conv2d 3x3", format!("[2,{c},{hw},{hw}] {dt}"), flops, &mut || drop(x.conv2d(&w, None, p).unwrap()));
        }
        for (l, lk, d) in [(4096usize, 4096usize, 40usize), (4096, 77, 40), (1024, 1024, 80)] {
            let heads = 8; // SD1.x: 8 heads at every level
            let q = randn(&[2, heads, l, d], dt, &mut rng);
            let k = randn(&[2, heads, lk, d], dt, &mut rng);
            let flops = 4.0 * 2.0 * heads as f64 * (l * lk * d) as f64;
            fbench("attention (unfused)", format!("[2,{heads},{l},{d}] x {lk} {dt}"), flops, &mut || drop(Tensor::scaled_dot_product_attention(&q, &k, &k, None, None).unwrap()));
        }
    }

    println!("\n| op | shape | time (µs) | GB/s | of memcpy |");
    println!("|---|---|---:|---:|---:|");
    for (name, shape, s, bw) in &rows {
        println!("| {name} | {shape} | {:.1} | {bw:.0} | {:.0}% |", s * 1e6, 100.0 * bw / copy_bw);
    }
    println!("\n| op | shape | time (µs) | TFLOP/s |");
    println!("|---|---|---:|---:|");
    for (name, shape, s, tf) in &flops_rows {
        println!("| {name} | {shape} | {:.1} | {tf:.2} |", s * 1e6);
    }
    let st = dev.memory_stats();
    println!("\nallocator: {} driver allocations, {} reuses, peak {:.0} MiB", st.driver_mallocs, st.reuses, st.peak as f64 / (1u64 << 20) as f64);
}
