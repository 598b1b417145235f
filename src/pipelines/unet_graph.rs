//! The sampling loop's UNet call, replayed from a CUDA graph when `LDM_CUDA_GRAPH=1` and the UNet
//! is on a GPU (backend/cuda/graph.rs says why graphs pay and what they demand). Off by default
//! until GPU timings show the gain (tools/gpu_check.sh's e2e run times both).
//!
//! Call 1 runs eagerly: it loads every kernel module (a capture cannot) and leaves the activations
//! in the allocator's cache, which the capture then reuses. Call 2 copies its inputs into buffers
//! of its own, records the whole forward pass into a graph, and replays it; later calls with the
//! same shapes only copy their inputs in, replay, and copy the output out (the next replay
//! overwrites it, and samplers keep outputs: PLMS's history). A change of shape records anew.

use crate::backend::cuda::{self, CapturedGraph};
use crate::models::unet::UNet;
use crate::{DType, Result, Tensor};

/// Whether the user asked for graphs (LDM_CUDA_GRAPH=1).
pub fn graphs_requested() -> bool {
    std::env::var("LDM_CUDA_GRAPH").is_ok_and(|v| v == "1")
}

struct Recorded {
    x: Tensor,
    temb: Tensor,
    context: Option<Tensor>,
    out: Tensor,
    // After the tensors it writes: dropping it returns its memory pool.
    graph: CapturedGraph,
}

impl Recorded {
    fn fits(&self, x: &Tensor, context: Option<&Tensor>) -> bool {
        let same = |a: &Tensor, b: &Tensor| a.shape() == b.shape() && a.dtype() == b.dtype() && a.device() == b.device();
        same(&self.x, x)
            && match (&self.context, context) {
                (Some(a), Some(b)) => same(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// Calls `unet` (no class labels) as `UNet::forward` does, through a graph where asked for.
pub(crate) struct UnetCaller<'a> {
    unet: &'a UNet,
    use_graph: bool,
    eager_calls: usize,
    recorded: Option<Recorded>,
}

impl<'a> UnetCaller<'a> {
    pub fn new(unet: &'a UNet) -> Self {
        UnetCaller { unet, use_graph: graphs_requested() && unet.device().is_cuda(), eager_calls: 0, recorded: None }
    }

    /// ε (or v) for latents `x` at timestep `t` (every sample the same), as `UNet::forward`.
    pub fn call(&mut self, x: &Tensor, t: f64, context: Option<&Tensor>) -> Result<Tensor> {
        let ts = Tensor::full(t, &[x.dim(0)?], DType::F32);
        if !self.use_graph {
            return self.unet.forward(x, &ts, context, None);
        }
        // Uploaded here, outside any capture; the graph reads it from its own buffer.
        let temb = self.unet.timestep_features(&ts, x.dtype())?.to_device(x.device())?;
        if self.eager_calls == 0 {
            self.eager_calls += 1;
            return self.unet.forward_embedded(x, &temb, context, None);
        }
        match &self.recorded {
            Some(r) if r.fits(x, context) => {
                cuda::fused::copy_values(&r.x, x)?;
                cuda::fused::copy_values(&r.temb, &temb)?;
                if let (Some(rc), Some(c)) = (&r.context, context) {
                    cuda::fused::copy_values(rc, c)?;
                }
            }
            _ => {
                self.recorded = None; // the old graph's pool first
                let crate::Device::Cuda(ordinal) = x.device() else { unreachable!("use_graph implies a CUDA UNet") };
                let (x, temb, context) = (x.copy()?, temb.copy()?, context.map(Tensor::copy).transpose()?);
                let (graph, out) = cuda::device(ordinal)?.capture(|| self.unet.forward_embedded(&x, &temb, context.as_ref(), None))?;
                self.recorded = Some(Recorded { x, temb, context, out, graph });
            }
        }
        let r = self.recorded.as_ref().expect("recorded above");
        r.graph.replay()?;
        r.out.copy()
    }
}
