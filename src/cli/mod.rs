pub mod bench;
pub mod eval;
pub mod inspect;
pub mod sample;
pub mod sample_io;
pub mod sample_paper;
pub mod train;
pub mod train_ldm;

/// Writes a command's output; a reader that went away (`| head`) ends it quietly, as in any
/// Unix tool, instead of the panic `println!` gives.
pub fn print_stdout(text: &str) -> ldm_engine::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
