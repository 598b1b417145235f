//! CUDA graphs: a sequence of launches recorded once on the device's stream and replayed with one
//! driver call. A UNet step is hundreds of kernel launches; recorded, the CPU's per-launch cost (the
//! driver call and our argument building, per kernel) leaves the hot loop, and the GPU runs the
//! whole step back to back.
//!
//! A graph replays with the addresses it was recorded with, so:
//! - the caller keeps the captured inputs alive and writes new values into them before each
//!   replay (device-to-device copies, outside the capture), and reads the outputs before the next;
//! - the allocator gives the capture a private pool (alloc.rs) that nobody else draws from while
//!   the graph lives;
//! - nothing inside the capture may copy to or from the host (`check_not_capturing` refuses it
//!   with a clear error instead of a corrupt graph) or wait for the device.

use super::CudaDevice;
use crate::{Error, Result};
use cudarc::driver::sys;
use cudarc::driver::CudaGraph;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A recorded graph with its private memory pool; dropping it returns the pool's blocks.
pub struct CapturedGraph {
    graph: Option<CudaGraph>,
    pool: super::alloc::PoolId,
    dev: Arc<CudaDevice>,
}

impl std::fmt::Debug for CapturedGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CapturedGraph(pool {} on {:?})", self.pool, self.dev)
    }
}

impl CapturedGraph {
    /// Queues one replay on the device's stream (asynchronous, like a launch).
    pub fn replay(&self) -> Result<()> {
        match (&self.graph, self.dev.dry_run()) {
            (Some(graph), _) => graph.launch().map_err(|e| self.dev.driver_error("graph replay", e)),
            (None, Some(dry)) => {
                dry.replay_graph();
                Ok(())
            }
            (None, None) => Err(Error::invalid("graph replay", "the graph was already released")),
        }
    }
}

impl Drop for CapturedGraph {
    fn drop(&mut self) {
        // The graph first (a replay still queued keeps its own reference on the driver side),
        // then its blocks, which later work on the same stream is ordered after.
        drop(self.graph.take());
        self.dev.alloc.drop_pool(self.pool);
    }
}

impl CudaDevice {
    /// Records the device work `record` queues into a graph instead of running it, and returns the
    /// graph with `record`'s result (tensors whose buffers the replays write). Nothing has run
    /// when this returns: call `replay` for that. Fails, with the capture abandoned and its memory
    /// returned, if `record` fails or does something a capture cannot hold.
    pub fn capture<R>(self: &Arc<Self>, record: impl FnOnce() -> Result<R>) -> Result<(CapturedGraph, R)> {
        self.bind()?;
        let pool = self.alloc.begin_capture();
        // Relaxed mode: allocating device memory (a new block for the pool) is allowed meanwhile.
        if let Some(stream) = self.stream()
            && let Err(e) = stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
        {
            self.alloc.drop_pool(pool);
            return Err(self.driver_error("begin graph capture", e));
        }
        self.capturing.store(true, Ordering::Relaxed);
        let result = record();
        self.capturing.store(false, Ordering::Relaxed);
        // Always end the capture, so the stream is usable whatever happened inside. A dry run
        // keeps everything else (the pool, the refused host copies) and records no graph.
        let ended = match self.stream() {
            Some(stream) => stream.end_capture(sys::CUgraphInstantiate_flags(0)).map(|g| g.map(Some)),
            None => Ok(Some(None)),
        };
        self.alloc.end_capture();
        let abandon = |e: Error| {
            self.alloc.drop_pool(pool);
            Err(e)
        };
        let value = match result {
            Ok(v) => v,
            Err(e) => return abandon(e),
        };
        match ended {
            Ok(Some(graph)) => Ok((CapturedGraph { graph, pool, dev: self.clone() }, value)),
            Ok(None) => abandon(Error::invalid("graph capture", "the capture recorded nothing")),
            Err(e) => abandon(self.driver_error("end graph capture", e)),
        }
    }
}
