//! A .safetensors file's 8-byte header length, JSON header (names, dtypes, shapes, offsets,
//! __metadata__) and data, as `SafeTensorsFile` opens it: every answer must be a tensor or an
//! error, never a panic, an abort or an allocation the file does not justify.
#![no_main]
use ldm_engine::io::safetensors::SafeTensorsFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = SafeTensorsFile::from_bytes("fuzz.safetensors", data) else { return };
    let _ = f.metadata().len();
    let names: Vec<String> = f.entries().iter().map(|e| e.name.clone()).collect();
    for name in names {
        if let Ok(t) = f.get(&name) {
            // read the values back (the data must lie inside the file)
            let _ = t.to_vec_f64();
        }
    }
});
