//! safetensors read (memory-mapped; CPU tensors borrow the mapped bytes when the dtype is one we
//! store and the data is aligned) and write (atomic: temp file + rename, so a crash mid-write
//! never leaves a half file under the real name).
//!
//! Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
//! data_offsets}, "__metadata__": {..}}, then the raw little-endian tensor bytes.

use crate::tensor::{Buf, CpuStorage, DType, Layout, Storage, Tensor};
use crate::{Error, Result};
use half::{bf16, f16};
use safetensors::{Dtype as StDtype, SafeTensorError, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One tensor's entry in the file header.
#[derive(Clone, Debug)]
pub struct TensorEntry {
    pub name: String,
    /// dtype as written in the file (may be one the engine converts on load, e.g. F64)
    pub file_dtype: String,
    pub shape: Vec<usize>,
    byte_start: usize,
    byte_len: usize,
    st_dtype: StDtype,
}

impl TensorEntry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn byte_len(&self) -> usize {
        self.byte_len
    }
}

/// An open, validated, memory-mapped safetensors file. Cloning shares the map.
#[derive(Clone)]
pub struct SafeTensorsFile {
    path: PathBuf,
    map: Arc<memmap2::Mmap>,
    entries: Vec<TensorEntry>,
    metadata: HashMap<String, String>,
}

fn file_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::File { path: path.display().to_string(), msg: msg.into() }
}

fn describe(e: SafeTensorError) -> String {
    match e {
        SafeTensorError::InvalidHeader(_) => "header is not valid UTF-8 (not a safetensors file?)".into(),
        SafeTensorError::InvalidHeaderDeserialization(e) | SafeTensorError::JsonError(e) => {
            format!("header is not a valid safetensors JSON header: {e}")
        }
        SafeTensorError::HeaderTooLarge => "header length is over 100 MB (corrupt or not a safetensors file)".into(),
        SafeTensorError::HeaderTooSmall | SafeTensorError::InvalidHeaderLength => "invalid header length".into(),
        SafeTensorError::InvalidOffset(name) => format!("tensor '{name}' has data offsets outside or overlapping the data section"),
        SafeTensorError::TensorInvalidInfo => "a tensor's shape × dtype size does not match its byte range".into(),
        SafeTensorError::MetadataIncompleteBuffer => {
            "tensor data does not cover the file's data section (truncated or padded file)".into()
        }
        SafeTensorError::ValidationOverflow => "a tensor shape overflows (corrupt header)".into(),
        other => format!("{other:?}"),
    }
}

fn engine_dtype(d: StDtype) -> Option<DType> {
    Some(match d {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::I64 => DType::I64,
        StDtype::U8 => DType::U8,
        _ => return None,
    })
}

fn st_dtype(d: DType) -> StDtype {
    match d {
        DType::F32 => StDtype::F32,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I64 => StDtype::I64,
        DType::U8 => StDtype::U8,
    }
}

impl SafeTensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| file_err(path, format!("cannot open: {e}")))?;
        let meta = file.metadata().map_err(|e| file_err(path, e.to_string()))?;
        if meta.is_dir() {
            // opening a folder succeeds on Unix; mapping it fails with "No such device"
            return Err(file_err(path, "is a folder, not a safetensors file"));
        }
        let len = meta.len() as usize;
        if len < 8 {
            return Err(file_err(path, format!("file is {len} bytes, too short for a safetensors header")));
        }
        // SAFETY: the map is read-only; a file changed underneath a running process is outside
        // what any mmap-based loader (torch, safetensors) can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| file_err(path, format!("cannot map: {e}")))?;
        Self::from_map(path, map)
    }

    /// A file held in memory (e.g. weights embedded in the binary with `include_bytes!`); `label`
    /// names it in messages.
    pub fn from_bytes(label: &str, bytes: &[u8]) -> Result<Self> {
        let path = Path::new(label);
        if bytes.len() < 8 {
            return Err(file_err(path, format!("{} bytes, too short for a safetensors header", bytes.len())));
        }
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(|e| file_err(path, format!("cannot allocate: {e}")))?;
        map.copy_from_slice(bytes);
        Self::from_map(path, map.make_read_only().map_err(|e| file_err(path, e.to_string()))?)
    }

    fn from_map(path: &Path, map: memmap2::Mmap) -> Result<Self> {
        let len = map.len();
        let header_len = u64::from_le_bytes(map[..8].try_into().unwrap());
        if header_len > (len - 8) as u64 {
            return Err(file_err(
                path,
                format!("header length {header_len} exceeds the {} bytes after it (truncated or not a safetensors file)", len - 8),
            ));
        }
        let st = SafeTensors::deserialize(&map).map_err(|e| file_err(path, describe(e)))?;
        let data_start = 8 + header_len as usize;
        let base = map.as_ptr() as usize;
        let mut entries: Vec<TensorEntry> = st
            .iter()
            .map(|(name, view)| TensorEntry {
                name: name.to_string(),
                file_dtype: format!("{:?}", view.dtype()),
                shape: view.shape().to_vec(),
                byte_start: view.data().as_ptr() as usize - base,
                byte_len: view.data().len(),
                st_dtype: view.dtype(),
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        debug_assert!(entries.iter().all(|e| e.byte_start >= data_start));
        let (_, meta) = SafeTensors::read_metadata(&map).map_err(|e| file_err(path, describe(e)))?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        Ok(SafeTensorsFile { path: path.to_path_buf(), map: Arc::new(map), entries, metadata })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Entries sorted by name.
    pub fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }
    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.entries.binary_search_by(|e| e.name.as_str().cmp(name)).ok().map(|i| &self.entries[i])
    }

    /// Loads a tensor in its stored dtype (F64/I32/BOOL and friends are widened or narrowed to the
    /// nearest engine dtype). Zero-copy on the CPU when the dtype is native and aligned.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let e = self.entry(name).ok_or_else(|| Error::Weights(format!("{}: no tensor named '{name}'", self.path.display())))?;
        let bytes = &self.map[e.byte_start..e.byte_start + e.byte_len];
        if let Some(dt) = engine_dtype(e.st_dtype) {
            let n = e.numel();
            let mapped = match dt {
                DType::F32 => Buf::<f32>::mapped(self.map.clone(), e.byte_start, n).map(CpuStorage::F32),
                DType::F16 => Buf::<f16>::mapped(self.map.clone(), e.byte_start, n).map(CpuStorage::F16),
                DType::BF16 => Buf::<bf16>::mapped(self.map.clone(), e.byte_start, n).map(CpuStorage::BF16),
                DType::I64 => Buf::<i64>::mapped(self.map.clone(), e.byte_start, n).map(CpuStorage::I64),
                DType::U8 => Buf::<u8>::mapped(self.map.clone(), e.byte_start, n).map(CpuStorage::U8),
            };
            let storage = mapped.unwrap_or_else(|| CpuStorage::from_bytes(bytes, dt));
            return Ok(Tensor::from_storage(Storage::Cpu(storage), Layout::contiguous(&e.shape), None));
        }
        let le = |w: usize| bytes.chunks_exact(w);
        let storage = match e.st_dtype {
            StDtype::F64 => CpuStorage::from_f32(le(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(), DType::F32),
            StDtype::I32 => CpuStorage::from_vec(le(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64).collect::<Vec<_>>()),
            StDtype::I16 => CpuStorage::from_vec(le(2).map(|c| i16::from_le_bytes(c.try_into().unwrap()) as i64).collect::<Vec<_>>()),
            StDtype::I8 => CpuStorage::from_vec(bytes.iter().map(|&b| b as i8 as i64).collect::<Vec<_>>()),
            StDtype::U32 => CpuStorage::from_vec(le(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64).collect::<Vec<_>>()),
            StDtype::BOOL => CpuStorage::from_vec(bytes.to_vec()),
            other => {
                return Err(Error::Weights(format!("{}: tensor '{name}' has dtype {other:?}, which the engine cannot load", self.path.display())));
            }
        };
        Ok(Tensor::from_storage(Storage::Cpu(storage), Layout::contiguous(&e.shape), None))
    }

    /// Loads and converts to `dtype` (the dtype conversion on load).
    pub fn get_as(&self, name: &str, dtype: DType) -> Result<Tensor> {
        self.get(name)?.to_dtype(dtype)
    }

    pub fn load_all(&self) -> Result<HashMap<String, Tensor>> {
        self.entries.iter().map(|e| Ok((e.name.clone(), self.get(&e.name)?))).collect()
    }
}

/// Writes tensors (any layout) to `path` atomically. Names must be unique.
pub fn save(path: impl AsRef<Path>, tensors: &[(&str, &Tensor)], metadata: Option<HashMap<String, String>>) -> Result<()> {
    let path = path.as_ref();
    let mut seen = std::collections::HashSet::new();
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        if !seen.insert(*name) {
            return Err(file_err(path, format!("duplicate tensor name '{name}'")));
        }
        let c = t.to_device(crate::tensor::Device::Cpu)?.contiguous()?;
        let g = c.storage();
        let Storage::Cpu(s) = &*g else { unreachable!("moved to the CPU above") };
        let es = c.dtype().size_in_bytes();
        let off = c.layout().offset() * es;
        owned.push((name.to_string(), c.dtype(), c.shape().to_vec(), s.as_bytes()[off..off + c.numel() * es].to_vec()));
    }
    let views = owned
        .iter()
        .map(|(n, d, s, b)| {
            safetensors::tensor::TensorView::new(st_dtype(*d), s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| file_err(path, describe(e)))
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = safetensors::serialize(views, metadata).map_err(|e| file_err(path, describe(e)))?;
    write_atomic(path, &bytes)
}

/// Writes via a temp file in the same directory, fsyncs, then renames over `path`.
/// Fault injection for tests/checkpoint_crash.rs: `LDM_ENGINE_CRASH_WRITE=NAME:K:B` makes the
/// K-th atomic write (1-based, counted per process) of a file named NAME stop the process after
/// B bytes of its temporary copy are on disk (B ≥ the size: after all of them, before the
/// rename). Unset in normal use, where it costs one environment lookup per write.
fn crash_point(name: &str) -> Option<usize> {
    static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let spec = std::env::var("LDM_ENGINE_CRASH_WRITE").ok()?;
    let mut parts = spec.split(':');
    let (target, k, b) = (parts.next()?, parts.next()?.parse::<usize>().ok()?, parts.next()?.parse::<usize>().ok()?);
    if target != name {
        return None;
    }
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    (n == k).then_some(b)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let stem = format!(".{name}.tmp");
    // A process killed mid-write leaves its temporary file; the next write of the same file
    // clears it, so crashes do not pile up half-written copies.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.starts_with(&stem)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let tmp = dir.join(format!("{stem}{}", std::process::id()));
    let crash_after = crash_point(name);
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        if let Some(b) = crash_after {
            f.write_all(&bytes[..b.min(bytes.len())])?;
            f.sync_all()?;
            // as a kill -9 would stop it: no unwinding, no cleanup, no rename (exit, not abort, so
            // no core file is written; 137 is a SIGKILLed process's status)
            std::process::exit(137);
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_err(path, format!("cannot write: {e}")));
    }
    Ok(())
}
