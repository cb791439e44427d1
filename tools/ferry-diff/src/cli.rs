//! The command line of ferry-diff: its clap definition, shared by the binary,
//! `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};
use ferry_cli::registry_args::RegistryArgs;

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Examples:
  ferry-diff --source bmpackages_1.30.0.tar.xz \\
      --private-registry 10.0.0.5:5000/ns --cacert ca.pem \\
      --username admin --password-stdin < pw.txt
  ferry-diff --source /media/usb/ferry-store \\
      --private-registry 10.0.0.5:5000 --need-credential=false --json --extra
  # re-hash the registry's copies:
  ferry-diff --deep --source /media/usb/ferry-store \\
      --private-registry 10.0.0.5:5000

Statuses: in-sync (tag at the package's digest, everything present), missing
(tag or repository absent), differs (tag at another digest), incomplete (right
digest, but a child manifest or blob is absent, or corrupt with --deep; repair
with `ferry-push --force`, which re-checks images whose tag looks up to date).
'push bytes' is exactly what ferry-push would upload. Same credential, TLS and
proxy options as ferry-push.

Exit codes:
  0    every image is in sync
  1    differences found
  2    error (unreachable registry, TLS or auth failure, bad input)
  130  interrupted (Ctrl-C)";

/// The tool's own help for the shared `--jobs`/`--json`, and its epilogue printed verbatim.
pub const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "Concurrent registry requests (default 64; fewer, e.g. --jobs 8, for a registry that cannot take that many); also the decoder threads when a package is staged (default: the CPU cores)",
    json: "Print one JSON document on stdout (every image's status) instead of human text",
};

/// Compare a private registry with a package: what is missing, what differs.
#[derive(Debug, Parser)]
#[command(name = "ferry-diff", version = ferry_cli::VERSION)]
pub struct Cli {
    /// Package (.tar.xz, .tar.zst, .tar.gz, .tar, docker-archive) or store directory,
    /// or a volume set: its directory, or its volume files in any order.
    #[arg(long, value_name = "PACKAGE_OR_STORE", num_args = 1.., required = true)]
    pub source: Vec<PathBuf>,
    /// Registry address, TLS and credential options (shared with the other registry tools).
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Download every blob of the package's images from the registry and re-hash it.
    #[arg(long)]
    pub deep: bool,
    /// Also list tags in the mapped repositories that the package does not have.
    #[arg(long)]
    pub extra: bool,
    /// Where a package is staged (default: PACKAGE.ferry-store beside it).
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// Machine-readable output (`--json`).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Parallelism (`--jobs`).
    #[command(flatten)]
    pub jobs: JobsArgs,
}
