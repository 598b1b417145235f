//! The tensor runtime: a cheap handle (Arc) over storage + layout + dtype + device, plus the graph
//! link (`op`) that autograd follows. Views share storage; ops return new tensors.
//!
//! Op families live in sibling files (elementwise, reduce, matmul, conv, norm, spatial, indexing,
//! attention); each validates its arguments, dispatches on the storage's backend, and records an
//! `autograd::Op` when an input is tracked and grad mode is on.

mod dtype;
mod layout;
mod storage;

pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod fused;
pub mod geglu;
pub mod indexing;
pub mod matmul;
pub mod norm;
pub mod reduce;
pub mod spatial;
mod views;

pub use dtype::{DType, WithDType};
pub use elementwise::{BinaryOp, CmpOp, UnaryOp};
pub use layout::{broadcast_shapes, contiguous_strides, numel, resolve_dim, Layout};
pub use storage::{Buf, CpuElem, CpuStorage, Storage};

use crate::autograd::{self, Op};
use crate::with_cpu_slice;
use crate::{Error, Result};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Cuda(usize),
}

impl Device {
    pub fn is_cuda(self) -> bool {
        matches!(self, Device::Cuda(_))
    }
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(i)) => Ok(Device::Cuda(i)),
                _ => Err(format!("unknown device '{s}' (expected cpu, cuda or cuda:N)")),
            },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(usize);

impl TensorId {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

pub struct TensorInner {
    id: TensorId,
    storage: Arc<RwLock<Storage>>,
    layout: Layout,
    dtype: DType,
    device: Device,
    /// How this tensor was computed; set only when it is part of a recorded graph.
    op: Option<Op>,
    /// A leaf whose gradient the user wants.
    is_var: bool,
}

#[derive(Clone)]
pub struct Tensor(Arc<TensorInner>);

/// Frees a recorded graph iteratively: the default recursive drop of a 100k-op chain (a long
/// unrolled loop) would overflow the stack.
impl Drop for TensorInner {
    fn drop(&mut self) {
        let Some(mut op) = self.op.take() else { return };
        let mut stack = op.take_inputs();
        while let Some(t) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t.0)
                && let Some(mut op) = inner.op.take() {
                    stack.append(&mut op.take_inputs());
                }
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor[{:?}, {}, {:?}{}]", self.shape(), self.dtype(), self.device(), if self.tracked() { ", tracked" } else { "" })
    }
}

/// Contiguous f32 values of a CPU tensor: borrowed from storage when it already is contiguous f32,
/// converted/copied otherwise.
pub enum F32Data<'a> {
    Borrowed(RwLockReadGuard<'a, Storage>, std::ops::Range<usize>),
    Owned(Vec<f32>),
}

impl std::ops::Deref for F32Data<'_> {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            F32Data::Borrowed(g, r) => match &**g {
                Storage::Cpu(CpuStorage::F32(b)) => &b.as_slice()[r.clone()],
                #[allow(unreachable_patterns)]
                _ => unreachable!("F32Data::Borrowed is only built over f32 CPU storage"),
            },
            F32Data::Owned(v) => v,
        }
    }
}

impl F32Data<'_> {
    pub fn into_vec(self) -> Vec<f32> {
        match self {
            F32Data::Owned(v) => v,
            b => b.to_vec(),
        }
    }
}

impl Tensor {
    // ---------- construction ----------

    pub(crate) fn from_storage(storage: Storage, layout: Layout, op: Option<Op>) -> Tensor {
        let dtype = storage.dtype();
        let device = match &storage {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(s) => Device::Cuda(s.ordinal()),
        };
        Tensor(Arc::new(TensorInner {
            id: TensorId::new(),
            storage: Arc::new(RwLock::new(storage)),
            layout,
            dtype,
            device,
            op,
            is_var: false,
        }))
    }

    /// A new contiguous CPU tensor from computed storage, recording `op` when given.
    pub(crate) fn from_cpu(storage: CpuStorage, shape: &[usize], op: Option<Op>) -> Tensor {
        Self::from_storage(Storage::Cpu(storage), Layout::contiguous(shape), op)
    }

    /// A contiguous tensor of `dtype` from f32 values (the CPU compute type).
    pub(crate) fn from_f32_values(v: Vec<f32>, shape: &[usize], dtype: DType, op: Option<Op>) -> Tensor {
        Self::from_cpu(CpuStorage::from_f32(v, dtype), shape, op)
    }

    /// A view: same storage, new layout.
    pub(crate) fn view_with(&self, layout: Layout, op: Option<Op>) -> Tensor {
        Tensor(Arc::new(TensorInner {
            id: TensorId::new(),
            storage: self.0.storage.clone(),
            layout,
            dtype: self.0.dtype,
            device: self.0.device,
            op,
            is_var: false,
        }))
    }

    /// The same storage and layout under a new graph link.
    pub(crate) fn with_op(&self, op: Option<Op>) -> Tensor {
        self.view_with(self.0.layout.clone(), op)
    }

    pub fn from_vec<T: CpuElem>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let expected = numel(shape);
        if data.len() != expected {
            return Err(Error::ElementCount { op: "from_vec", len: data.len(), expected, shape: shape.to_vec() });
        }
        Ok(Self::from_cpu(CpuStorage::from_vec(data), shape, None))
    }

    pub fn from_slice<T: CpuElem>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape)
    }

    pub fn full(value: f64, shape: &[usize], dtype: DType) -> Tensor {
        Self::from_f32_values(vec![value as f32; numel(shape)], shape, dtype, None)
    }
    pub fn zeros(shape: &[usize], dtype: DType) -> Tensor {
        Self::full(0.0, shape, dtype)
    }
    pub fn ones(shape: &[usize], dtype: DType) -> Tensor {
        Self::full(1.0, shape, dtype)
    }
    /// `full` on any device (a fill kernel on CUDA, no host copy).
    pub fn full_on(value: f64, shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        match device {
            Device::Cpu => Ok(Self::full(value, shape, dtype)),
            Device::Cuda(i) => crate::backend::cuda::ops::full(&crate::backend::cuda::device(i)?, value, shape, dtype),
        }
    }
    pub fn zeros_on(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::full_on(0.0, shape, dtype, device)
    }
    pub fn zeros_like(&self) -> Tensor {
        Self::zeros(self.shape(), self.dtype())
    }
    pub fn ones_like(&self) -> Tensor {
        Self::ones(self.shape(), self.dtype())
    }

    /// `start, start+step, …` below `end` (like torch.arange).
    pub fn arange(start: f64, end: f64, step: f64, dtype: DType) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || (end - start) / step < 0.0 {
            crate::bail!("arange", "empty or infinite range {start}..{end} step {step}");
        }
        let n = ((end - start) / step).ceil() as usize;
        let v: Vec<f64> = (0..n).map(|i| start + i as f64 * step).collect();
        Ok(match dtype {
            DType::I64 => Self::from_cpu(CpuStorage::from_vec(v.iter().map(|&x| x as i64).collect::<Vec<_>>()), &[n], None),
            _ => Self::from_f32_values(v.iter().map(|&x| x as f32).collect(), &[n], dtype, None),
        })
    }

    /// Normal(mean, std) samples from the caller's RNG (seed it for reproducibility).
    pub fn randn(shape: &[usize], mean: f64, std: f64, dtype: DType, rng: &mut impl Rng) -> Tensor {
        let v = (0..numel(shape))
            .map(|_| { let z: f64 = StandardNormal.sample(rng); (mean + std * z) as f32 })
            .collect::<Vec<f32>>();
        Self::from_f32_values(v, shape, dtype, None)
    }

    /// Uniform [lo, hi) samples from the caller's RNG.
    pub fn rand(shape: &[usize], lo: f64, hi: f64, dtype: DType, rng: &mut impl Rng) -> Tensor {
        let v = (0..numel(shape)).map(|_| rng.random_range(lo as f32..hi as f32)).collect::<Vec<f32>>();
        Self::from_f32_values(v, shape, dtype, None)
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Self::full(value, &[], dtype)
    }

    // ---------- accessors ----------

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.shape()
    }
    pub fn dim(&self, d: isize) -> Result<usize> {
        Ok(self.shape()[resolve_dim("dim", d, self.rank())?])
    }
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> Device {
        self.0.device
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    pub fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }
    pub fn is_var(&self) -> bool {
        self.0.is_var
    }
    /// Part of a recorded graph: a variable or computed from one with grad mode on.
    pub fn tracked(&self) -> bool {
        self.0.is_var || self.0.op.is_some()
    }
    /// A handle that stays valid only while this tensor's storage lives (caches keyed by storage).
    pub(crate) fn storage_weak(&self) -> std::sync::Weak<RwLock<Storage>> {
        Arc::downgrade(&self.0.storage)
    }
    /// Whether two tensors share one storage buffer (views of each other).
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.0.storage, &other.0.storage)
    }
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }
    /// True when the CPU storage is a zero-copy window into a memory-mapped file.
    pub fn is_memory_mapped(&self) -> bool {
        match &*self.storage() {
            Storage::Cpu(s) => s.is_mapped(),
            Storage::Cuda(_) => false,
        }
    }

    // ---------- autograd handles ----------

    /// A leaf variable sharing this tensor's storage, whose gradient `backward` will return.
    pub fn requires_grad(&self) -> Tensor {
        Tensor(Arc::new(TensorInner {
            id: TensorId::new(),
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            dtype: self.0.dtype,
            device: self.0.device,
            op: None,
            is_var: true,
        }))
    }

    /// The same values, cut from the graph (shares storage).
    pub fn detach(&self) -> Tensor {
        self.view_with(self.0.layout.clone(), None)
    }

    // ---------- data out ----------

    /// Contiguous f32 view of a CPU tensor's values (zero-copy when possible).
    pub fn f32_data(&self) -> Result<F32Data<'_>> {
        let guard = self.storage();
        match &*guard {
            Storage::Cpu(s) => {
                if let (CpuStorage::F32(_), Some(r)) = (s, self.0.layout.contiguous_range()) {
                    return Ok(F32Data::Borrowed(guard, r));
                }
                let l = &self.0.layout;
                let v = with_cpu_slice!(s, |sl| match l.contiguous_range() {
                    Some(r) => sl[r].iter().map(|x| x.to_f32()).collect(),
                    None => l.offsets().map(|o| sl[o].to_f32()).collect(),
                });
                Ok(F32Data::Owned(v))
            }
            Storage::Cuda(_) => Err(Error::NotOnDevice { op: "reading values as a CPU slice", device: self.device() }),
        }
    }

    /// Changes the values in place — the one mutation in the runtime, for optimisers: every
    /// handle sharing this storage (the parameter the model holds) sees the new values. Only
    /// owned, contiguous f32 CPU storage qualifies; a memory-mapped or f16 weight must be copied
    /// into f32 first (load with DType::F32 from a non-mapped source, or `.to_dtype(F32)`).
    pub fn update_f32(&self, f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
        let range = self.0.layout.contiguous_range().ok_or_else(|| Error::invalid("update_f32", "the tensor is a strided view: update its contiguous base"))?;
        let mut guard = self.0.storage.write().unwrap_or_else(|e| e.into_inner());
        match &mut *guard {
            Storage::Cpu(CpuStorage::F32(Buf::Owned(v))) => f(&mut v[range]),
            Storage::Cpu(CpuStorage::F32(Buf::Mapped { .. })) => Err(Error::invalid("update_f32", "the tensor is a window into a memory-mapped file: copy it before training it")),
            Storage::Cpu(other) => Err(Error::invalid("update_f32", format!("only f32 tensors can be updated in place, this one is {:?}", other.dtype()))),
            Storage::Cuda(_) => Err(Error::NotOnDevice { op: "update_f32", device: self.0.device }),
        }
    }

    /// Values in row-major order, converted to `T`.
    pub fn to_vec<T: WithDType>(&self) -> Result<Vec<T>> {
        if self.device() != Device::Cpu {
            return self.to_device(Device::Cpu)?.to_vec();
        }
        let guard = self.storage();
        match &*guard {
            Storage::Cpu(s) => {
                let l = &self.0.layout;
                Ok(with_cpu_slice!(s, |sl| match l.contiguous_range() {
                    Some(r) => sl[r].iter().map(|x| convert::<_, T>(*x)).collect(),
                    None => l.offsets().map(|o| convert::<_, T>(sl[o])).collect(),
                }))
            }
            Storage::Cuda(_) => unreachable!("moved to the CPU above"),
        }
    }

    /// Values in row-major order as f64 (test references, printing).
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        if self.device() != Device::Cpu {
            return self.to_device(Device::Cpu)?.to_vec_f64();
        }
        let guard = self.storage();
        match &*guard {
            Storage::Cpu(s) => {
                let l = &self.0.layout;
                Ok(with_cpu_slice!(s, |sl| l.offsets().map(|o| sl[o].to_f64()).collect()))
            }
            Storage::Cuda(_) => unreachable!("moved to the CPU above"),
        }
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::bad_shape("to_scalar", "expected exactly one element", self.shape()));
        }
        Ok(self.to_vec_f64()?[0])
    }

    // ---------- device ----------

    /// The same values on `device` (a copy; the tensor itself when it is already there). The
    /// copy is a leaf: gradients do not flow across devices.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let c = if self.is_contiguous() { self.clone() } else { self.detach().contiguous()? };
        let range = c.layout().contiguous_range().expect("contiguous");
        let guard = c.storage();
        let storage = match (&*guard, device) {
            (Storage::Cpu(s), Device::Cuda(i)) => {
                Storage::Cuda(crate::backend::cuda::CudaStorage::upload(&crate::backend::cuda::device(i)?, s, range)?)
            }
            (Storage::Cuda(s), Device::Cpu) => Storage::Cpu(s.download(range.start, range.len())?),
            (Storage::Cuda(s), Device::Cuda(i)) => {
                let host = s.download(range.start, range.len())?;
                Storage::Cuda(crate::backend::cuda::CudaStorage::upload(&crate::backend::cuda::device(i)?, &host, 0..host.len())?)
            }
            (Storage::Cpu(_), Device::Cpu) => unreachable!("same device handled above"),
        };
        Ok(Tensor::from_storage(storage, Layout::contiguous(self.shape()), None))
    }

    /// Records `op` (built lazily) if any input is tracked and grad mode is on.
    pub(crate) fn track(inputs: &[&Tensor], op: impl FnOnce() -> Op) -> Option<Op> {
        Tensor::will_record(inputs).then(op)
    }
    /// Whether an op on `inputs` is recorded (gradients on, some input tracked): fused kernels
    /// without a backward rule of their own step aside for the recorded ops then.
    pub(crate) fn will_record(inputs: &[&Tensor]) -> bool {
        autograd::is_grad_enabled() && inputs.iter().any(|t| t.tracked())
    }

    pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
        if a.device() != b.device() {
            return Err(Error::DeviceMismatch { op, lhs: a.device(), rhs: b.device() });
        }
        Ok(())
    }
    pub(crate) fn same_dtype(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
        if a.dtype() != b.dtype() {
            return Err(Error::DTypeMismatch { op, lhs: a.dtype(), rhs: b.dtype() });
        }
        Self::same_device(op, a, b)
    }
    pub(crate) fn require_float(&self, op: &'static str) -> Result<()> {
        if !self.dtype().is_float() {
            return Err(Error::UnsupportedDType { op, dtype: self.dtype() });
        }
        Ok(())
    }
}

fn convert<S: WithDType, T: WithDType>(x: S) -> T {
    T::from_f64(x.to_f64())
}
