//! The command line of ferry-export: its clap definition, shared by the binary,
//! `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Examples:
  ferry-export --source bmpackages_1.30.0.tar.xz --to /media/usb/ferry-store
  skopeo inspect \\
      oci:/media/usb/ferry-store:gcr.io/anthos-baremetal-release/kube-apiserver:1.30.0
  # re-hash every blob already in the store, replace the bad ones:
  ferry-export --repair --source bmpackages_1.30.0.tar.xz \\
      --to /media/usb/ferry-store

The package may be .tar, .tar.gz, .tar.xz (multi-block files decode on several
threads), .tar.zst, an OCI layout directory or a docker-archive; the format is
detected from the content. DIR becomes a plain OCI image layout that skopeo,
umoci and containerd read; every image is named by its full reference.
Blobs already in the store are checked before they are kept: their size, and
their blake3 against the record written with them (their full digest when
there is no record); --repair checks every one's full sha256/sha512 digest.
A blob that fails is replaced from the package, and the summary names it.
A volume set (ferry-pack --volume-size) is read volume by volume in one pass:
give its directory or its files in any order. A missing or damaged volume is
rebuilt from the parity volumes first (in a hidden directory beside the set,
removed afterwards) and named; a volume of another set is refused. With more
volumes missing than parity rebuilds, every image whose blobs have all arrived
is exported, the others are named with the volumes they wait for (exit 2):
rerun with those volumes to finish (nothing is written twice).
Interrupted (Ctrl-C, kill -9, power loss, disk full)? Run the same command
again: verified blobs are kept, the rest is written.

Exit codes:
  0    exported: every image of the package is in the store, verified
  2    error (also: images waiting for missing volumes of a set) (unreadable, corrupt or hostile package; not enough space; store locked)
  130  interrupted (Ctrl-C): rerun the same command to resume";

/// The tool's own help for the shared `--jobs`/`--json`, and its epilogue printed verbatim.
pub const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "Decoder threads for multi-block .tar.xz packages (default: the CPU cores)",
    json: "Print one JSON document (the summary) on stdout instead of human text",
};

/// Unpack an image package into a verified, resumable OCI layout store.
#[derive(Debug, Parser)]
#[command(name = "ferry-export", version = ferry_cli::VERSION)]
pub struct Cli {
    /// Package to read (.tar, .tar.gz, .tar.xz, .tar.zst, OCI layout dir, docker-archive),
    /// or a volume set: its directory, or its volume files in any order.
    #[arg(long, value_name = "PACKAGE", num_args = 1.., required = true)]
    pub source: Vec<PathBuf>,
    /// Destination store directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Check blobs already in the store by their full digest (sha256/sha512)
    /// instead of their recorded blake3, and replace those that fail.
    #[arg(long)]
    pub repair: bool,
    /// Machine-readable output (`--json`).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Parallelism (`--jobs`).
    #[command(flatten)]
    pub jobs: JobsArgs,
}
