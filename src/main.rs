//! The `ldm-engine` command line. Every failure prints one line `error: …` and exits non-zero.

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "ldm-engine", version, about = "Latent Diffusion Models in Rust: sample, train, benchmark, inspect")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate images from a text prompt.
    Sample(Box<cli::sample::SampleArgs>),
    /// Train the first-stage autoencoder (`train autoencoder`); the diffusion model is next.
    Train(Box<cli::train::TrainArgs>),
    /// Evaluate: FID between folders, LPIPS/PSNR/SSIM between paired folders, an autoencoder.
    Eval(Box<cli::eval::EvalCommand>),
    /// Time the engine's core ops on Stable Diffusion shapes and print GFLOP/s or GB/s.
    Bench {
        /// Only run benches whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Timed repetitions per bench (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// List the tensors of a .safetensors file: names, dtypes, shapes, parameter counts.
    Inspect {
        file: PathBuf,
        /// Only list tensors whose name contains this text.
        #[arg(long)]
        filter: Option<String>,
        /// Print only the summary lines.
        #[arg(long)]
        summary: bool,
    },
}

/// A usage mistake clap catches, as one line: its message's first paragraph joined (a list of
/// missing arguments is indented on the lines below the first), without the usage block and tips
/// that follow. Exit 2, clap's code for usage errors. --help, --version and the help printed when
/// a subcommand is missing stay clap's own output.
fn parse_args() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    Cli::try_parse().map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let text = e.to_string();
            let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let line = if first.is_empty() { "error: invalid arguments".to_string() } else { first.join(" ") };
            eprintln!("{line} (see --help)");
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let res = match cli.command {
        Command::Inspect { file, filter, summary } => cli::inspect::run(&file, filter.as_deref(), summary),
        Command::Bench { filter, reps } => cli::bench::run(filter.as_deref(), reps),
        Command::Sample(args) => cli::sample::run(&args),
        Command::Train(args) => cli::train::train(&args),
        Command::Eval(args) => cli::eval::run(&args),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
