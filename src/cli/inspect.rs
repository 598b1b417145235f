//! `ldm-engine inspect FILE.safetensors`: what a checkpoint holds.

use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::Result;
use std::fmt::Write as _;
use std::path::Path;

pub fn run(path: &Path, filter: Option<&str>, summary: bool) -> Result<()> {
    let f = SafeTensorsFile::open(path)?;
    let mut out = String::new();
    let shown: Vec<_> = f.entries().iter().filter(|e| filter.is_none_or(|s| e.name.contains(s))).collect();
    if !summary {
        let w = shown.iter().map(|e| e.name.len()).max().unwrap_or(4).max(4);
        writeln!(out, "{:<w$}  {:<5}  {:<22}  {:>12}", "name", "dtype", "shape", "params").unwrap();
        for e in &shown {
            writeln!(out, "{:<w$}  {:<5}  {:<22}  {:>12}", e.name, e.file_dtype.to_lowercase(), format!("{:?}", e.shape), e.numel()).unwrap();
        }
    }
    let params: usize = shown.iter().map(|e| e.numel()).sum();
    let bytes: usize = shown.iter().map(|e| e.byte_len()).sum();
    let mut by_dtype = std::collections::BTreeMap::<String, usize>::new();
    for e in &shown {
        *by_dtype.entry(e.file_dtype.to_lowercase()).or_default() += e.numel();
    }
    let dtypes: Vec<String> = by_dtype.iter().map(|(d, n)| format!("{d}: {n}")).collect();
    writeln!(
        out,
        "{} tensors, {} parameters ({:.2} M), {:.2} MiB of data [{}]",
        shown.len(),
        params,
        params as f64 / 1e6,
        bytes as f64 / (1 << 20) as f64,
        dtypes.join(", ")
    )
    .unwrap();
    let mut meta: Vec<_> = f.metadata().iter().collect();
    meta.sort();
    for (k, v) in meta {
        writeln!(out, "metadata {k} = {v}").unwrap();
    }
    super::print_stdout(&out)
}
