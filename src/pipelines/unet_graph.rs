//! The sampling loop's UNet call, replayed from a CUDA graph when `LDM_CUDA_GRAPH=1` and the UNet
//! is on a GPU (backend/cuda/graph.rs says why graphs pay and what they demand). Off by default
//! until GPU timings show the gain (tools/gpu_check.sh's e2e run times both).
//!
//! Call 1 runs eagerly: it loads every kernel module (a capture cannot) and leaves the activations
//! in the allocator's cache, which the capture then reuses. Call 2 copies its inputs into buffers
//! of its own, records the whole forward pass into a graph, and replays it; later calls with the
//! same shapes only copy their inputs in, replay, and copy the output out (the next replay
//! overwrites it, and samplers keep outputs: PLMS's history). A change of shape records anew.
//!
//! The caller is made for one sampling run with its context, which it keeps as a `CrossContext`:
//! the cross-attention keys and values are projected at the first call and read from then on
//! (the graph, recorded at the second, reads them where they are).

use crate::backend::cuda::{self, CapturedGraph};
use crate::models::unet::UNet;
use crate::models::unet_blocks::CrossContext;
use crate::{DType, Result, Tensor};

/// Whether the user asked for graphs (LDM_CUDA_GRAPH=1).
pub fn graphs_requested() -> bool {
    std::env::var("LDM_CUDA_GRAPH").is_ok_and(|v| v == "1")
}

struct Recorded {
    x: Tensor,
    temb: Tensor,
    out: Tensor,
    // After the tensors it writes: dropping it returns its memory pool.
    graph: CapturedGraph,
}

impl Recorded {
    fn fits(&self, x: &Tensor) -> bool {
        self.x.shape() == x.shape() && self.x.dtype() == x.dtype() && self.x.device() == x.device()
    }
}

/// Calls `unet` (no class labels) against one context as `UNet::forward` does, through a graph
/// where asked for.
pub(crate) struct UnetCaller<'a> {
    unet: &'a UNet,
    // before `recorded`: a projection made during a capture is dropped before the graph's pool
    context: Option<CrossContext>,
    use_graph: bool,
    eager_calls: usize,
    recorded: Option<Recorded>,
}

impl<'a> UnetCaller<'a> {
    /// `context` [N, L, C_ctx] (in the UNet's dtype) for every call, or None.
    pub fn new(unet: &'a UNet, context: Option<&Tensor>) -> Self {
        let context = context.map(CrossContext::new);
        UnetCaller { unet, context, use_graph: graphs_requested() && unet.device().is_cuda(), eager_calls: 0, recorded: None }
    }

    /// ε (or v) for latents `x` at timestep `t` (every sample the same), as `UNet::forward`.
    pub fn call(&mut self, x: &Tensor, t: f64) -> Result<Tensor> {
        let ts = Tensor::full(t, &[x.dim(0)?], DType::F32);
        // Uploaded here, outside any capture; a graph reads it from its own buffer.
        let temb = self.unet.timestep_features(&ts, x.dtype())?.to_device(x.device())?;
        if !self.use_graph || self.eager_calls == 0 {
            self.eager_calls += 1;
            return self.unet.forward_embedded_in(x, &temb, self.context.as_ref(), None);
        }
        match &self.recorded {
            Some(r) if r.fits(x) => {
                cuda::fused::copy_values(&r.x, x)?;
                cuda::fused::copy_values(&r.temb, &temb)?;
            }
            _ => {
                self.recorded = None; // the old graph's pool first
                let crate::Device::Cuda(ordinal) = x.device() else { unreachable!("use_graph implies a CUDA UNet") };
                let (x, temb) = (x.copy()?, temb.copy()?);
                let context = self.context.as_ref();
                let (graph, out) = cuda::device(ordinal)?.capture(|| self.unet.forward_embedded_in(&x, &temb, context, None))?;
                self.recorded = Some(Recorded { x, temb, out, graph });
            }
        }
        let r = self.recorded.as_ref().expect("recorded above");
        r.graph.replay()?;
        r.out.copy()
    }
}
