//! The command line of ferry-verify: its clap definition, shared by the binary,
//! `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Examples:
  ferry-verify /media/usb/ferry-store                 # full check of a store
  ferry-verify --fast --json /media/usb/ferry-store   # cheap blake3 audit (stores written by ferry-export)
  ferry-verify bmpackages_1.30.0.tar.xz               # a package, in one streaming pass, nothing extracted
  ferry-verify --quarantine /media/usb/ferry-store && ferry-export --source PKG --to /media/usb/ferry-store

Checks every blob's digest (sha256, sha512) and size, that every descriptor
reachable from index.json resolves to a present blob, and that manifests parse
and agree with their descriptors' media types. Keeps going after a problem and
reports all of them. Unreferenced blobs and leftover temp files are reported
as information, not failures.

Exit codes:
  0  everything verified
  1  something is corrupt, missing or inconsistent
  2  could not run (unreadable path, not a store or package, store locked)";

/// Verify stores and packages: every digest, every size, the whole graph.
#[derive(Debug, Parser)]
#[command(name = "ferry-verify", version = ferry_cli::VERSION, after_help = AFTER_HELP)]
pub struct Cli {
    /// Stores (OCI layout directories) or package files to verify.
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Check sizes and the blake3 sidecar recorded by ferry-export (several times
    /// cheaper); blobs without a record fall back to their full digest.
    #[arg(long)]
    pub fast: bool,
    /// Move corrupt blobs of a store to .ferry/quarantine/ so that rerunning
    /// ferry-export replaces them.
    #[arg(long)]
    pub quarantine: bool,
    /// Machine-readable output (`--json`).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Parallelism (`--jobs`).
    #[command(flatten)]
    pub jobs: JobsArgs,
}
