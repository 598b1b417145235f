//! The engine's one error type. Every fallible call returns `Result<T>`; a user mistake (a bad
//! shape, a corrupt file, a missing device) becomes one of these variants with the op name and the
//! shapes/dtypes involved, never a panic.

use crate::tensor::{DType, Device};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    ShapeMismatch { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },

    #[error("{op}: {msg} (shape {shape:?})")]
    BadShape { op: &'static str, msg: String, shape: Vec<usize> },

    #[error("{op}: dimension {dim} out of range for a tensor of rank {rank}")]
    DimOutOfRange { op: &'static str, dim: isize, rank: usize },

    #[error("{op}: dtype mismatch: {lhs} vs {rhs}")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },

    #[error("{op}: unsupported dtype {dtype}")]
    UnsupportedDType { op: &'static str, dtype: DType },

    #[error("{op}: device mismatch: {lhs:?} vs {rhs:?}")]
    DeviceMismatch { op: &'static str, lhs: Device, rhs: Device },

    #[error("device {0:?} is not available: {1}")]
    DeviceUnavailable(Device, String),

    #[error("{op} is not implemented for {device:?} tensors yet; move them to the CPU with to_device(Device::Cpu)")]
    NotOnDevice { op: &'static str, device: Device },

    #[error("out of memory on {device:?}: could not allocate {} ({} in use by tensors, peak {}, device total {}); try a smaller batch, a tiled VAE decode, or f16/bf16", mib(*requested), mib(*in_use), mib(*peak), mib(*total))]
    OutOfMemory { device: Device, requested: usize, in_use: usize, peak: usize, total: usize },

    #[error("{op}: {len} elements do not fill shape {shape:?} ({expected} elements)")]
    ElementCount { op: &'static str, len: usize, expected: usize, shape: Vec<usize> },

    #[error("{op}: invalid argument: {msg}")]
    InvalidArgument { op: &'static str, msg: String },

    #[error("backward: {0}")]
    Backward(String),

    #[error("{path}: {msg}")]
    File { path: String, msg: String },

    #[error("weights: {0}")]
    Weights(String),

    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

impl Error {
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument { op, msg: msg.into() }
    }
    pub fn bad_shape(op: &'static str, msg: impl Into<String>, shape: &[usize]) -> Self {
        Error::BadShape { op, msg: msg.into(), shape: shape.to_vec() }
    }
}

/// Early return with an `InvalidArgument` error: `bail!("conv2d", "stride must be > 0")`.
#[macro_export]
macro_rules! bail {
    ($op:expr, $($arg:tt)*) => {
        return Err($crate::Error::InvalidArgument { op: $op, msg: format!($($arg)*) })
    };
}
