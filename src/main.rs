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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
