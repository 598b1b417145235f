//! `ldm-engine inspect FILE.safetensors`: what a checkpoint holds.

use ldm_engine::io::safetensors::SafeTensorsFile;
use ldm_engine::Result;
use std::path::Path;

pub fn run(path: &Path, filter: Option<&str>, summary: bool) -> Result<()> {
    let f = SafeTensorsFile::open(path)?;
    let shown: Vec<_> = f.entries().iter().filter(|e| filter.is_none_or(|s| e.name.contains(s))).collect();
    if !summary {
        let w = shown.iter().map(|e| e.name.len()).max().unwrap_or(4).max(4);
        println!("{:<w$}  {:<5}  {:<22}  {:>12}", "name", "dtype", "shape", "params");
        for e in &shown {
            println!("{:<w$}  {:<5}  {:<22}  {:>12}", e.name, e.file_dtype.to_lowercase(), format!("{:?}", e.shape), e.numel());
        }
    }
    let params: usize = shown.iter().map(|e| e.numel()).sum();
    let bytes: usize = shown.iter().map(|e| e.byte_len()).sum();
    let mut by_dtype = std::collections::BTreeMap::<String, usize>::new();
    for e in &shown {
        *by_dtype.entry(e.file_dtype.to_lowercase()).or_default() += e.numel();
    }
    let dtypes: Vec<String> = by_dtype.iter().map(|(d, n)| format!("{d}: {n}")).collect();
    println!(
        "{} tensors, {} parameters ({:.2} M), {:.2} MiB of data [{}]",
        shown.len(),
        params,
        params as f64 / 1e6,
        bytes as f64 / (1 << 20) as f64,
        dtypes.join(", ")
    );
    let mut meta: Vec<_> = f.metadata().iter().collect();
    meta.sort();
    for (k, v) in meta {
        println!("metadata {k} = {v}");
    }
    Ok(())
}
