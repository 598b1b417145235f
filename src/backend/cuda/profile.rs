//! Where the GPU time goes, kernel by kernel: with `LDM_CUDA_PROFILE=1` every launch is bracketed
//! by two timing events and waited for, and the time is summed per kernel name. `report()` gives
//! the table (the `sample` command prints it after the images). Waiting after every launch
//! serialises the host with the GPU, so wall-clock timings of a profiled run mean nothing; the
//! per-kernel times are the GPU's own. Launches inside a CUDA graph capture are not timed.

use super::CudaDevice;
use crate::{Error, Result};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaEvent;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};

pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("LDM_CUDA_PROFILE").is_ok_and(|v| v == "1"))
}

/// Per kernel name: launches and milliseconds.
static TABLE: Mutex<Option<HashMap<String, (u64, f64)>>> = Mutex::new(None);

fn timing_error(dev: &CudaDevice, e: cudarc::driver::DriverError) -> Error {
    dev.driver_error("profile event", e)
}

/// Before a launch: a start event, when profiling and not capturing.
pub(crate) fn begin(dev: &CudaDevice) -> Result<Option<CudaEvent>> {
    let Some(stream) = dev.stream().filter(|_| enabled() && !dev.capturing.load(Ordering::Relaxed)) else {
        return Ok(None);
    };
    stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map(Some).map_err(|e| timing_error(dev, e))
}

/// After the launch: waits for it and adds its time to `name`'s row.
pub(crate) fn end(dev: &CudaDevice, start: Option<CudaEvent>, name: &str) -> Result<()> {
    let (Some(start), Some(stream)) = (start, dev.stream()) else { return Ok(()) };
    let stop = stream.record_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).map_err(|e| timing_error(dev, e))?;
    let ms = start.elapsed_ms(&stop).map_err(|e| timing_error(dev, e))? as f64;
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let row = table.get_or_insert_with(HashMap::new).entry(name.to_string()).or_insert((0, 0.0));
    row.0 += 1;
    row.1 += ms;
    Ok(())
}

/// Forgets what was timed so far (e.g. a warm-up).
pub fn reset() {
    *TABLE.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The kernels timed so far, most time first, as a Markdown table; None when nothing was timed.
pub fn report() -> Option<String> {
    let table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let rows = table.as_ref().filter(|t| !t.is_empty())?;
    let total: f64 = rows.values().map(|r| r.1).sum();
    let mut sorted: Vec<_> = rows.iter().collect();
    sorted.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    let mut out = format!("kernel time by kernel (LDM_CUDA_PROFILE=1), {total:.1} ms in all\n\n| kernel | launches | total ms | mean µs | share |\n|---|---:|---:|---:|---:|\n");
    for (name, (calls, ms)) in sorted {
        out += &format!("| {name} | {calls} | {ms:.2} | {:.1} | {:.1}% |\n", ms * 1e3 / *calls as f64, 100.0 * ms / total);
    }
    Some(out)
}
