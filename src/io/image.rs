//! Images out: tensors in [-1, 1] to 8-bit RGB, and PNG files carrying their generation
//! parameters in a tEXt chunk (AUTOMATIC1111's "parameters" key, which other tools read; iTXt
//! when the text is not Latin-1).

use std::path::Path;

use crate::{Error, Result, Tensor};

/// One image [3, H, W] (or [1, 3, H, W]) in [-1, 1] → interleaved RGB bytes, clamped and rounded.
/// A grey image ([1, H, W] or [1, 1, H, W], e.g. MNIST models') is written as equal R, G and B.
pub fn to_rgb8(img: &Tensor) -> Result<(Vec<u8>, usize, usize)> {
    let (c_in, h, w) = match img.shape() {
        &[c, h, w] | &[1, c, h, w] if c == 3 || c == 1 => (c, h, w),
        s => return Err(Error::bad_shape("to_rgb8", "expected an RGB image [3, H, W] or a grey one [1, H, W]", s)),
    };
    let v = img.contiguous()?.to_vec::<f32>()?;
    let mut out = vec![0u8; 3 * h * w];
    for c in 0..3 {
        let plane = if c_in == 1 { 0 } else { c };
        for p in 0..h * w {
            let x = v[plane * h * w + p];
            // NaN becomes 0 (black) rather than poisoning the file
            let x = if x.is_nan() { -1.0 } else { x };
            out[3 * p + c] = (((x + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    Ok((out, w, h))
}

/// Writes an RGB PNG with tEXt chunks, atomically (a failed write leaves no partial file).
pub fn save_png(path: &Path, rgb: &[u8], width: usize, height: usize, text: &[(&str, &str)]) -> Result<()> {
    let file_err = |msg: String| Error::File { path: path.display().to_string(), msg };
    if rgb.len() != 3 * width * height || width == 0 || height == 0 {
        return Err(file_err(format!("{} bytes do not make a {width}x{height} RGB image", rgb.len())));
    }
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, width as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        for (k, v) in text {
            // tEXt holds Latin-1 only; other text (a prompt with an emoji or in Chinese) goes in an
            // iTXt chunk, UTF-8, as PIL's PngInfo.add_text does — it used to fail the write after
            // the whole sampling run
            let added = if v.chars().all(|c| u32::from(c) <= 0xff) { enc.add_text_chunk(k.to_string(), v.to_string()) } else { enc.add_itxt_chunk(k.to_string(), v.to_string()) };
            added.map_err(|e| file_err(format!("text chunk '{k}': {e}")))?;
        }
        let mut w = enc.write_header().map_err(|e| file_err(e.to_string()))?;
        w.write_image_data(rgb).map_err(|e| file_err(e.to_string()))?;
    }
    crate::io::safetensors::write_atomic(path, &bytes)
}

/// The largest image `load_png` decodes, in pixels (8192×8192).
pub const MAX_PIXELS: u64 = 8192 * 8192;

/// A decoded PNG: (RGB bytes, width, height, tEXt chunks as (keyword, text)).
pub type LoadedPng = (Vec<u8>, usize, usize, Vec<(String, String)>);

/// Reads an 8-bit RGB(A)/grey PNG.
pub fn load_png(path: &Path) -> Result<LoadedPng> {
    let bytes = std::fs::read(path).map_err(|e| Error::File { path: path.display().to_string(), msg: e.to_string() })?;
    load_png_bytes(&path.display().to_string(), &bytes)
}

/// `load_png` on a file's bytes (`label` names it in errors; the fuzz target feeds this).
pub fn load_png_bytes(label: &str, bytes: &[u8]) -> Result<LoadedPng> {
    let file_err = |msg: String| Error::File { path: label.to_string(), msg };
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = dec.read_info().map_err(|e| file_err(format!("not a readable PNG: {e}")))?;
    // The header's size is the file's claim, not its data: refuse what no sampling run uses
    // before allocating for it (found by the image_decode fuzz target: a 68-byte file asking for
    // 4 TB aborted the process).
    let (hw, hh) = (reader.info().width as u64, reader.info().height as u64);
    if hw * hh > MAX_PIXELS {
        return Err(file_err(format!("the PNG says it is {hw}x{hh}: more than the {MAX_PIXELS} pixels (8192x8192) this reader decodes")));
    }
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| file_err("image too large".into()))?];
    let info = reader.next_frame(&mut buf).map_err(|e| file_err(format!("corrupt PNG data: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let px = &buf[..info.buffer_size()];
    let rgb: Vec<u8> = match info.color_type {
        png::ColorType::Rgb => px.to_vec(),
        png::ColorType::Rgba => px.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => px.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => px.chunks(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        png::ColorType::Indexed => return Err(file_err("indexed PNG was not expanded".into())),
    };
    let info = reader.info();
    let latin1 = info.uncompressed_latin1_text.iter().map(|t| (t.keyword.clone(), t.text.clone()));
    let utf8 = info.utf8_text.iter().filter_map(|t| Some((t.keyword.clone(), t.get_text().ok()?)));
    let text = latin1.chain(utf8).collect();
    Ok((rgb, w, h, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the image_decode fuzz target: a PNG whose header claims an enormous size made the
    /// reader allocate for it. The fixture is a valid 68-byte PNG saying 10⁶×10⁶ RGBA; before the
    /// guard it ended the process ("memory allocation of 4000000000000 bytes failed").
    #[test]
    fn a_png_claiming_a_huge_size_is_an_error_not_an_allocation() {
        let bytes = include_bytes!("../../tests/fixtures/bad_inputs/png_huge_header.png");
        let e = load_png_bytes("huge.png", bytes).unwrap_err().to_string();
        assert!(e.contains("huge.png") && e.contains("more than the 67108864 pixels"), "{e}");
    }

    /// A prompt outside Latin-1 (an emoji, Chinese) used to fail `sample` at the very end: tEXt
    /// cannot hold it. It goes in an iTXt chunk and reads back as written.
    #[test]
    fn text_outside_latin1_is_written_as_itxt_and_read_back() {
        let path = std::env::temp_dir().join(format!("ldm-image-itxt-{}.png", std::process::id()));
        let text = [("parameters", "a cat 🐱 in 北京\nSteps: 1"), ("Software", "ldm-engine é")];
        save_png(&path, &[7u8; 2 * 2 * 3], 2, 2, &text).unwrap();
        let (_, _, _, back) = load_png(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let want: Vec<(String, String)> = text.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut back = back;
        back.sort();
        let mut want = want;
        want.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn a_grey_image_is_written_as_equal_rgb() {
        let grey = Tensor::from_vec(vec![-1.0f32, 0.0, 1.0, 0.5], &[1, 2, 2]).unwrap();
        let rgb = Tensor::cat(&[&grey, &grey, &grey], 0).unwrap();
        let (a, w, h) = to_rgb8(&grey).unwrap();
        assert_eq!((w, h), (2, 2));
        assert_eq!(a, to_rgb8(&rgb).unwrap().0);
        assert_eq!(a[..6], [0, 0, 0, 128, 128, 128]);
        assert!(to_rgb8(&Tensor::zeros(&[2, 2, 2], crate::DType::F32)).is_err(), "two channels are neither grey nor RGB");
    }
}
