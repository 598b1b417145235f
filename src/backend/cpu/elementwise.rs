//! CPU elementwise kernels over strided, broadcast inputs. Inner rows run as tight loops (the
//! compiler vectorises the unit-stride and broadcast-scalar cases); rows are split across threads.

use super::math::{unary_f32, unary_grad_f32};
use super::{f32_strided, gather_strided, PAR_MIN};
use crate::autograd::Op;
use crate::tensor::{numel, BinaryOp, CmpOp, CpuStorage, DType, Layout, Storage, Tensor, UnaryOp};
use crate::with_cpu_slice;
use crate::{Error, Result};
use rayon::prelude::*;

pub fn copy_contiguous(t: &Tensor, op: Option<Op>) -> Result<Tensor> {
    let g = t.storage();
    let Storage::Cpu(s) = &*g else { return Err(Error::NotOnDevice { op: "cpu copy", device: t.device() }) };
    let l = t.layout();
    let out = match s {
        CpuStorage::U8(b) => CpuStorage::from_vec(gather_strided(b.as_slice(), l)),
        CpuStorage::I64(b) => CpuStorage::from_vec(gather_strided(b.as_slice(), l)),
        CpuStorage::F16(b) => CpuStorage::from_vec(gather_strided(b.as_slice(), l)),
        CpuStorage::BF16(b) => CpuStorage::from_vec(gather_strided(b.as_slice(), l)),
        CpuStorage::F32(b) => CpuStorage::from_vec(gather_strided(b.as_slice(), l)),
    };
    Ok(Tensor::from_cpu(out, t.shape(), op))
}

pub fn cast(t: &Tensor, dtype: DType, op: Option<Op>) -> Result<Tensor> {
    let g = t.storage();
    let Storage::Cpu(s) = &*g else { return Err(Error::NotOnDevice { op: "cpu cast", device: t.device() }) };
    let l = t.layout();
    // i64 → i64-like targets go through f64 so large indices survive.
    let vals: Vec<f64> = with_cpu_slice!(s, |sl| l.offsets().map(|o| crate::tensor::WithDType::to_f64(sl[o])).collect());
    let out = match dtype {
        DType::I64 => CpuStorage::from_vec(vals.iter().map(|&v| v as i64).collect::<Vec<_>>()),
        DType::U8 => CpuStorage::from_vec(vals.iter().map(|&v| v as u8).collect::<Vec<_>>()),
        _ => CpuStorage::from_f32(vals.iter().map(|&v| v as f32).collect(), dtype),
    };
    Ok(Tensor::from_cpu(out, t.shape(), op))
}

/// Applies `f` to every element, keeping the dtype.
pub fn map(t: &Tensor, f: impl Fn(f32) -> f32 + Sync + Send, op: Option<Op>) -> Result<Tensor> {
    let v = t.f32_data()?;
    let mut out = vec![0f32; v.len()];
    if v.len() >= PAR_MIN {
        out.par_chunks_mut(4096).zip(v.par_chunks(4096)).for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &x)| *o = f(x)));
    } else {
        out.iter_mut().zip(v.iter()).for_each(|(o, &x)| *o = f(x));
    }
    drop(v);
    Ok(Tensor::from_f32_values(out, t.shape(), t.dtype(), op))
}

pub fn unary(t: &Tensor, u: UnaryOp, op: Option<Op>) -> Result<Tensor> {
    // One arm per op so each closure has a constant op and its loop compiles (and vectorises)
    // without a per-element match.
    macro_rules! each {
        ($($v:ident),*) => {
            match u { $(UnaryOp::$v => map(t, |x| unary_f32(UnaryOp::$v, x), op),)* }
        };
    }
    each!(Neg, Abs, Exp, Log, Sqrt, Rsqrt, Recip, Sqr, Tanh, Sigmoid, Silu, Relu, GeluErf, GeluTanh, QuickGelu, Sin, Cos)
}

/// g · op'(x), the unary backward rule as one fused pass.
pub fn unary_backward(x: &Tensor, g: &Tensor, u: UnaryOp) -> Result<Tensor> {
    zip_map(x, g, x.shape(), move |x, g| g * unary_grad_f32(u, x), x.dtype())
}

pub fn binary(a: &Tensor, b: &Tensor, bop: BinaryOp, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    let out = match bop {
        BinaryOp::Add => zip_values(a, b, shape, |x, y| x + y),
        BinaryOp::Sub => zip_values(a, b, shape, |x, y| x - y),
        BinaryOp::Mul => zip_values(a, b, shape, |x, y| x * y),
        BinaryOp::Div => zip_values(a, b, shape, |x, y| x / y),
        BinaryOp::Maximum => zip_values(a, b, shape, |x: f32, y: f32| if x >= y { x } else { y }),
        BinaryOp::Minimum => zip_values(a, b, shape, |x: f32, y: f32| if x <= y { x } else { y }),
    }?;
    Ok(Tensor::from_f32_values(out, shape, a.dtype(), op))
}

pub fn cmp(a: &Tensor, b: &Tensor, c: CmpOp, shape: &[usize]) -> Result<Tensor> {
    if a.dtype() == DType::I64 {
        // exactly: i64 values past 2^24 do not survive a trip through f32
        let (x, y) = (a.broadcast_as(shape)?.to_vec::<i64>()?, b.broadcast_as(shape)?.to_vec::<i64>()?);
        let v = x.iter().zip(&y).map(|(x, y)| c.holds(x, y) as u8 as f32).collect();
        return Ok(Tensor::from_f32_values(v, shape, DType::U8, None));
    }
    let f = move |x: f32, y: f32| c.holds(&x, &y) as u8 as f32;
    let v = zip_values(a, b, shape, f)?;
    Ok(Tensor::from_f32_values(v, shape, DType::U8, None))
}

pub fn where_cond(c: &Tensor, t: &Tensor, f: &Tensor, shape: &[usize], op: Option<Op>) -> Result<Tensor> {
    let (cs, cl) = f32_strided(c)?;
    let (ts, tl) = f32_strided(t)?;
    let (fs, fl) = f32_strided(f)?;
    let (cl, tl, fl) = (cl.broadcast_as(shape)?, tl.broadcast_as(shape)?, fl.broadcast_as(shape)?);
    let out: Vec<f32> = cl
        .offsets()
        .zip(tl.offsets())
        .zip(fl.offsets())
        .map(|((co, to), fo)| if cs[co] != 0.0 { ts[to] } else { fs[fo] })
        .collect();
    Ok(Tensor::from_f32_values(out, shape, t.dtype(), op))
}

/// `f(a, b)` over the broadcast of both to `shape`, as a new tensor of `dtype`.
pub fn zip_map(a: &Tensor, b: &Tensor, shape: &[usize], f: impl Fn(f32, f32) -> f32 + Sync + Send, dtype: DType) -> Result<Tensor> {
    let v = zip_values(a, b, shape, f)?;
    Ok(Tensor::from_f32_values(v, shape, dtype, None))
}

/// The broadcasting core: reads both inputs through their (stride-0 for broadcast) layouts row by
/// row, so neither side is ever expanded in memory.
pub fn zip_values(a: &Tensor, b: &Tensor, shape: &[usize], f: impl Fn(f32, f32) -> f32 + Sync + Send) -> Result<Vec<f32>> {
    let (sa, la) = f32_strided(a)?;
    let (sb, lb) = f32_strided(b)?;
    let (la, lb) = (la.broadcast_as(shape)?, lb.broadcast_as(shape)?);
    let n = numel(shape);
    let mut out = vec![0f32; n];
    if n == 0 {
        return Ok(out);
    }
    if let (Some(ra), Some(rb)) = (la.contiguous_range(), lb.contiguous_range()) {
        let (xa, xb) = (&sa[ra], &sb[rb]);
        let body = |(o, (x, y)): (&mut [f32], (&[f32], &[f32]))| {
            o.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&x, &y))| *o = f(x, y))
        };
        if n >= PAR_MIN {
            out.par_chunks_mut(4096).zip(xa.par_chunks(4096).zip(xb.par_chunks(4096))).for_each(body);
        } else {
            body((&mut out[..], (xa, xb)));
        }
        return Ok(out);
    }
    let inner = *shape.last().unwrap_or(&1);
    let (starts_a, ta) = row_starts(&la);
    let (starts_b, tb) = row_starts(&lb);
    let row = |(r, o): (usize, &mut [f32])| {
        let (pa, pb) = (starts_a[r], starts_b[r]);
        match (ta, tb) {
            (1, 1) => o.iter_mut().zip(sa[pa..pa + inner].iter().zip(&sb[pb..pb + inner])).for_each(|(o, (&x, &y))| *o = f(x, y)),
            (1, 0) => {
                let y = sb[pb];
                o.iter_mut().zip(&sa[pa..pa + inner]).for_each(|(o, &x)| *o = f(x, y))
            }
            (0, 1) => {
                let x = sa[pa];
                o.iter_mut().zip(&sb[pb..pb + inner]).for_each(|(o, &y)| *o = f(x, y))
            }
            _ => o.iter_mut().enumerate().for_each(|(i, o)| *o = f(sa[pa + i * ta], sb[pb + i * tb])),
        }
    };
    if n >= PAR_MIN {
        out.par_chunks_mut(inner).enumerate().for_each(row);
    } else {
        out.chunks_mut(inner).enumerate().for_each(row);
    }
    Ok(out)
}

/// Storage offset of each innermost row, and the innermost stride.
fn row_starts(l: &Layout) -> (Vec<usize>, usize) {
    let mut starts = Vec::with_capacity(l.numel() / l.shape().last().copied().unwrap_or(1).max(1));
    let mut stride = 1;
    l.for_each_row(|s, st, _| {
        starts.push(s);
        stride = st;
    });
    (starts, stride)
}
