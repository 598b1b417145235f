//! Elementwise ops: unary maps, broadcasting binary ops, affine, powf, comparisons and where.
//! All accept strided views; broadcasting follows NumPy rules.

use super::{broadcast_shapes, Tensor};
use crate::autograd::Op;
use crate::backend;
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Abs,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Recip,
    Sqr,
    Tanh,
    Sigmoid,
    Silu,
    Relu,
    /// exact form, 0.5·x·(1 + erf(x/√2))
    GeluErf,
    /// tanh approximation, 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))
    GeluTanh,
    /// x·σ(1.702x), the CLIP variant
    QuickGelu,
    Sin,
    Cos,
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Rsqrt => "rsqrt",
            UnaryOp::Recip => "recip",
            UnaryOp::Sqr => "sqr",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Silu => "silu",
            UnaryOp::Relu => "relu",
            UnaryOp::GeluErf => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::QuickGelu => "quick_gelu",
            UnaryOp::Sin => "sin",
            UnaryOp::Cos => "cos",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    /// Whether `x op y` holds (NaN compares as IEEE says: only Ne holds).
    pub fn holds<T: PartialOrd>(self, x: &T, y: &T) -> bool {
        match self {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            CmpOp::Lt => x < y,
            CmpOp::Le => x <= y,
            CmpOp::Gt => x > y,
            CmpOp::Ge => x >= y,
        }
    }
}

macro_rules! unary_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl Tensor {
            $(pub fn $name(&self) -> Result<Tensor> { self.unary(UnaryOp::$op) })*
        }
    };
}
unary_methods!(
    neg => Neg, abs => Abs, exp => Exp, log => Log, sqrt => Sqrt, rsqrt => Rsqrt, recip => Recip,
    sqr => Sqr, tanh => Tanh, sigmoid => Sigmoid, silu => Silu, relu => Relu, gelu => GeluErf,
    gelu_tanh => GeluTanh, quick_gelu => QuickGelu, sin => Sin, cos => Cos,
);

macro_rules! binary_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl Tensor {
            $(pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> { self.binary(rhs, BinaryOp::$op) })*
        }
    };
}
binary_methods!(add => Add, sub => Sub, mul => Mul, div => Div, maximum => Maximum, minimum => Minimum);

macro_rules! cmp_methods {
    ($($name:ident => $op:ident),* $(,)?) => {
        impl Tensor {
            $(pub fn $name(&self, rhs: &Tensor) -> Result<Tensor> { self.cmp(rhs, CmpOp::$op) })*
        }
    };
}
cmp_methods!(eq => Eq, ne => Ne, lt => Lt, le => Le, gt => Gt, ge => Ge);

impl Tensor {
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        self.require_float(op.name())?;
        let rec = Tensor::track(&[self], || Op::Unary(self.clone(), op));
        backend::unary(self, op, rec)
    }

    /// Broadcasting binary op; both sides must share dtype and device.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        Tensor::same_dtype(op.name(), self, rhs)?;
        let shape = broadcast_shapes(op.name(), self.shape(), rhs.shape())?;
        let rec = Tensor::track(&[self, rhs], || Op::Binary(self.clone(), rhs.clone(), op));
        backend::binary(self, rhs, op, &shape, rec)
    }

    /// x·mul + add.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.require_float("affine")?;
        let rec = Tensor::track(&[self], || Op::Affine(self.clone(), mul, add));
        backend::affine(self, mul, add, rec)
    }

    pub fn add_scalar(&self, v: f64) -> Result<Tensor> {
        self.affine(1.0, v)
    }
    pub fn mul_scalar(&self, v: f64) -> Result<Tensor> {
        self.affine(v, 0.0)
    }

    /// x^e elementwise (x ≥ 0 for non-integer e).
    pub fn powf(&self, e: f64) -> Result<Tensor> {
        self.require_float("powf")?;
        let rec = Tensor::track(&[self], || Op::Powf(self.clone(), e));
        backend::powf(self, e, rec)
    }

    /// Broadcasting comparison giving a U8 mask (1 where true).
    pub fn cmp(&self, rhs: &Tensor, op: CmpOp) -> Result<Tensor> {
        Tensor::same_dtype("cmp", self, rhs)?;
        let shape = broadcast_shapes("cmp", self.shape(), rhs.shape())?;
        backend::cmp(self, rhs, op, &shape)
    }

    /// Picks `on_true` where `self` (the condition, any dtype) is non-zero, else `on_false`;
    /// all three broadcast together.
    pub fn where_cond(&self, on_true: &Tensor, on_false: &Tensor) -> Result<Tensor> {
        Tensor::same_dtype("where_cond", on_true, on_false)?;
        Tensor::same_device("where_cond", self, on_true)?;
        let s = broadcast_shapes("where_cond", on_true.shape(), on_false.shape())?;
        let shape = broadcast_shapes("where_cond", self.shape(), &s)?;
        let rec = Tensor::track(&[on_true, on_false], || Op::Where(self.clone(), on_true.clone(), on_false.clone()));
        backend::where_cond(self, on_true, on_false, &shape, rec)
    }

    /// Clamp to [lo, hi] (differentiable inside the range).
    pub fn clamp(&self, lo: f64, hi: f64) -> Result<Tensor> {
        let lo_t = Tensor::full_on(lo, &[], self.dtype(), self.device())?;
        let hi_t = Tensor::full_on(hi, &[], self.dtype(), self.device())?;
        self.maximum(&lo_t)?.minimum(&hi_t)
    }

}
