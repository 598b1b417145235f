//! The harness of the device tests (tests/device_ops.rs and its module
//! tests/device_ops/tensor_core.rs): every op run on every available device and compared with the
//! CPU in f32. `on_devices!` runs one test body per device: on the CPU (always — so CI exercises
//! each body and its reference) and on each CUDA device when there is one; without a GPU the CUDA
//! runs are skipped with the reason printed.
//!
//! Inputs are seeded normals (never all-zero), odd sizes, and strided views (transposed,
//! narrowed, broadcast). Tolerances:
//! - f32: |out − ref| ≤ 2e-5 + 2e-5·|ref| against the CPU f32 result (CUDA's expf/tanhf/erff are
//!   within 2 ulp; reductions differ in summation order).
//! - f16/bf16: the device result's worst error against the f32 reference is at most 2× the worst
//!   error of the CPU twin at the same precision (which computes in f32 and rounds once), plus one
//!   unit of the type's epsilon for the rounding of a value that sits on a tie.

use ldm_engine::backend::cuda;
use ldm_engine::{DType, Device, Tensor};

/// The CPU plus every CUDA device; prints why CUDA is skipped.
pub fn devices() -> Vec<Device> {
    let n = cuda::device_count();
    if n == 0 {
        let why = cuda::no_device_reason();
        eprintln!("CUDA runs skipped: {why}");
    }
    std::iter::once(Device::Cpu).chain((0..n).map(Device::Cuda)).collect()
}

#[macro_export]
macro_rules! on_devices {
    ($(#[$m:meta])* fn $name:ident($dev:ident) $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            for $dev in common::device_check::devices() {
                eprintln!("{} on {:?}", stringify!($name), $dev);
                $body
            }
            common::device_check::report_failed_checks();
        }
    };
}

pub const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

pub fn eps(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => 9.77e-4,
        DType::BF16 => 7.81e-3,
        _ => 1.2e-7,
    }
}

pub fn worst_rel(a: &[f64], r: &[f64]) -> f64 {
    a.iter().zip(r).map(|(a, r)| if a.is_nan() != r.is_nan() { f64::INFINITY } else if a.is_nan() { 0.0 } else { (a - r).abs() / r.abs().max(1.0) }).fold(0.0, f64::max)
}

thread_local! {
    /// The checks of the running test that failed: a failed check is printed and the test goes on
    /// to its other cases (one GPU run should show every broken case, not the first), then fails.
    static FAILED_CHECKS: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

pub fn report_failed_checks() {
    let failed = FAILED_CHECKS.with(|f| std::mem::take(&mut *f.borrow_mut()));
    assert!(failed.is_empty(), "{} check(s) failed:\n{}", failed.len(), failed.join("\n"));
}

/// Runs `f` (inputs already in `dtype`) on `dev` and on the CPU and compares as the module doc says.
/// `f` gets the device and builds its inputs there; `reference` is the CPU f32 computation.
/// A failure is recorded (and printed) and the test continues; `report_failed_checks` fails it.
pub fn check(what: &str, dev: Device, dtype: DType, f: impl Fn(Device, DType) -> Tensor) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| compare(what, dev, dtype, &f)));
    if let Err(payload) = outcome {
        let msg = payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        eprintln!("FAILED CHECK: {what} {dtype:?} on {dev:?}: {msg}");
        FAILED_CHECKS.with(|f| f.borrow_mut().push(format!("{what} {dtype:?} on {dev:?}: {msg}")));
    }
}

pub fn compare(what: &str, dev: Device, dtype: DType, f: &impl Fn(Device, DType) -> Tensor) {
    let out = f(dev, dtype);
    assert_eq!(out.device(), dev, "{what}: result left the device");
    assert_eq!(out.dtype(), dtype, "{what}: dtype changed");
    let reference = f(Device::Cpu, DType::F32);
    assert_eq!(out.shape(), reference.shape(), "{what}: shape");
    let (o, r) = (out.to_vec_f64().unwrap(), reference.to_vec_f64().unwrap());
    if dtype == DType::F32 {
        super::assert_close(&o, &r, 2e-5, 2e-5, &format!("{what} on {dev:?}"));
    } else {
        let naive = f(Device::Cpu, dtype).to_vec_f64().unwrap();
        let (err, allowed) = (worst_rel(&o, &r), 2.0 * worst_rel(&naive, &r) + eps(dtype));
        assert!(err <= allowed, "{what} {dtype:?} on {dev:?}: worst relative error {err:.3e} > {allowed:.3e} (2x the CPU twin's + eps)");
    }
}

/// A seeded input in `dtype` on `dev`; `scale` widens the normals.
pub fn input(shape: &[usize], seed: u64, dtype: DType, dev: Device) -> Tensor {
    super::randn(shape, seed).to_dtype(dtype).unwrap().to_device(dev).unwrap()
}

/// The same values as a transposed (non-contiguous) view.
pub fn strided(t: &Tensor) -> Tensor {
    let r = t.rank();
    t.transpose(0, r as isize - 1).unwrap().contiguous().unwrap().transpose(0, r as isize - 1).unwrap()
}

