//! Image files as the engine reads them: PNG for --init-image / --mask / --segmentation
//! (`load_png_bytes`) and any PNG/JPEG of a training folder (`load_rgb_bytes`, the `image`
//! crate). Every file must decode or give an error.
#![no_main]
use ldm_engine::io::image::load_png_bytes;
use ldm_engine::train::data::load_rgb_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = load_png_bytes("fuzz.png", data);
    let _ = load_rgb_bytes("fuzz.img", data);
});
