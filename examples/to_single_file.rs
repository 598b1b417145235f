//! Writes a diffusers Stable Diffusion folder as one CompVis-style single file (the layout SD1.x
//! .safetensors checkpoints ship in), e.g. to check that `sample --model FILE` and
//! `sample --model FOLDER` give the same latents.
//!
//! Run: cargo run --release --example to_single_file -- SD_FOLDER OUT.safetensors

use ldm_engine::models::checkpoint::DiffusersFolder;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [folder, out] = args.as_slice() else {
        eprintln!("usage: to_single_file SD_FOLDER OUT.safetensors");
        std::process::exit(2);
    };
    let run = || -> ldm_engine::Result<()> {
        let mut f = DiffusersFolder::open(folder)?;
        if f.weight_files("unet").is_err() {
            f.variant = Some("fp16".into());
        }
        f.to_single_file(out)
    };
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    println!("wrote {out}");
}
