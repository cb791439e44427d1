//! Argument groups shared by several tools.

use clap::Args;

/// `--json` and `--quiet`-style output options.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Machine-readable JSON on stdout instead of human text (each tool's
    /// `--help` says whether one document or JSON lines).
    #[arg(long)]
    pub json: bool,
}

/// `--jobs N`.
#[derive(Debug, Clone, Args)]
pub struct JobsArgs {
    /// Parallel workers (each tool's `--help` says which, and the default).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
}

impl JobsArgs {
    /// The requested job count, or the number of available cores.
    pub fn resolve(&self) -> u32 {
        self.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2)
        })
    }
}

/// Prints a serialisable value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
