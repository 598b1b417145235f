//! Element types. The CPU backend computes in f32 (f64 only in test references); f16/bf16 are
//! storage formats that are widened on load and narrowed on store. Integer types carry indices
//! (I64, as PyTorch) and masks (U8).

use half::{bf16, f16};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    U8,
    I64,
    F16,
    BF16,
    F32,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::I64 => 8,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DType::U8 => "u8",
            DType::I64 => "i64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "u8" => Ok(DType::U8),
            "i64" => Ok(DType::I64),
            "f16" => Ok(DType::F16),
            "bf16" => Ok(DType::BF16),
            "f32" => Ok(DType::F32),
            _ => Err(format!("unknown dtype '{s}' (expected f32, f16, bf16, i64 or u8)")),
        }
    }
}

/// A Rust element type that a tensor can hold.
pub trait WithDType: bytemuck::Pod + Copy + Send + Sync + std::fmt::Debug + PartialEq + 'static {
    const DTYPE: DType;
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

macro_rules! with_dtype {
    ($t:ty, $dt:ident, $to32:expr, $from32:expr, $to64:expr, $from64:expr) => {
        impl WithDType for $t {
            const DTYPE: DType = DType::$dt;
            #[inline(always)]
            fn to_f32(self) -> f32 {
                $to32(self)
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                $from32(v)
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                $to64(self)
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                $from64(v)
            }
        }
    };
}

with_dtype!(f32, F32, |v| v, |v| v, |v: f32| v as f64, |v: f64| v as f32);
with_dtype!(f16, F16, f16::to_f32, f16::from_f32, f16::to_f64, f16::from_f64);
with_dtype!(bf16, BF16, bf16::to_f32, bf16::from_f32, bf16::to_f64, bf16::from_f64);
with_dtype!(i64, I64, |v: i64| v as f32, |v: f32| v as i64, |v: i64| v as f64, |v: f64| v as i64);
with_dtype!(u8, U8, |v: u8| v as f32, |v: f32| v as u8, |v: u8| v as f64, |v: f64| v as u8);
