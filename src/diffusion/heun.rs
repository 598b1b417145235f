//! (being written)

use super::{not_yet, Sampler, SamplerOptions, SchedulerConfig};
use crate::Result;

pub fn new(_cfg: &SchedulerConfig, opts: &SamplerOptions) -> Result<Box<dyn Sampler>> {
    not_yet(opts.kind)
}
