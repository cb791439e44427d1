//! The command line of ferry-export: its clap definition, shared by the binary,
//! `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Example:
  ferry-export --source bmpackages_1.30.0.tar.xz --to /media/usb/ferry-store
  skopeo inspect oci:/media/usb/ferry-store:gcr.io/anthos-baremetal-release/kube-apiserver:1.30.0

The package may be .tar, .tar.gz, .tar.xz (multi-block files decode on several
threads), .tar.zst, an OCI layout directory or a docker-archive; the format is
detected from the content. DIR becomes a plain OCI image layout that skopeo,
umoci and containerd read; every image is named by its full reference.
Interrupted (Ctrl-C, kill -9, power loss, disk full)? Run the same command
again: verified blobs are kept, the rest is written.

Exit codes:
  0  exported
  2  error (unreadable, corrupt or hostile package; not enough space; store locked)";

/// Unpack an image package into a verified, resumable OCI layout store.
#[derive(Debug, Parser)]
#[command(name = "ferry-export", version = ferry_cli::VERSION, after_help = AFTER_HELP)]
pub struct Cli {
    /// Package to read (.tar, .tar.gz, .tar.xz, .tar.zst, OCI layout dir, docker-archive).
    #[arg(long, value_name = "PACKAGE")]
    pub source: PathBuf,
    /// Destination store directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Machine-readable output (`--json`).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Parallelism (`--jobs`).
    #[command(flatten)]
    pub jobs: JobsArgs,
}
