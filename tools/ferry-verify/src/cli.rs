//! The command line of ferry-verify: its clap definition, shared by the binary,
//! `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Examples:
  ferry-verify /media/usb/ferry-store                # full check of a store
  ferry-verify --fast --json /media/usb/ferry-store  # cheap blake3 audit
  ferry-verify bmpackages_1.30.0.tar.xz              # a package, streamed
  ferry-verify /media/dvd/pkg.vol003-of-007.tar.zst  # one volume alone
  ferry-verify /srv/incoming/pkg/                    # a whole volume set
  # check; repair from the package only if damaged (exit 0: sound or repaired):
  ferry-verify --quarantine /media/usb/ferry-store || \\
      ferry-export --source bmpackages_1.30.0.tar.xz --to /media/usb/ferry-store

Checks every blob's digest (sha256, sha512) and size, that every descriptor
reachable from index.json resolves to a present blob, and that manifests parse
and agree with their descriptors' media types. Keeps going after a problem and
reports all of them. Unreferenced blobs and leftover temp files are reported
as information, not failures. A store whose index.json names no image is a
finding: an export into it did not finish (images are named last).
A volume (ferry-pack --volume-size) given alone is checked alone: its header,
every blob and part against its digest, its content digest, its size; a
courier can check each disc as it arrives. A directory of volumes, or several
volume files, is checked as the set: every volume alone, then missing or
damaged data volumes are rebuilt from parity (each named, with the volumes it
was rebuilt from; exit 1 all the same), then the rejoined package is verified
like a package. A volume of another set is refused (exit 2).
--fast checks the blake3 recorded by ferry-export instead of the digests.
Blobs are hashed --jobs at a time; one reader thread reads them from the
disk ahead of the hashers as a single sequential stream, the way `cat` reads
files, not one stream per hasher. A blob larger than its share of the work
(one huge layer) gets help: a reader thread so its core only hashes, or with
--fast all --jobs threads, each hashing the next 16 MiB piece of the blake3
tree behind one reader (16 MiB mapped per thread, whatever the blob's size;
e.g. `ferry-verify --fast STORE` on a 4 GiB layer). A package is
decompressed on a thread of its own while its blobs are hashed.
In the repair line, verify exits 1 when it found damage, so `||` runs the
export exactly then; the export replaces what is missing or fails its check
and exits 0 once every image is whole again.

Exit codes:
  0    everything verified
  1    something is corrupt, missing or inconsistent, or the store has no image
  2    could not run (unreadable path, not a store or package, or a writer
       such as ferry-export holds the store: its PID is named)
  130  interrupted (Ctrl-C)";

/// The tool's own help for the shared `--jobs`/`--json`, and its epilogue printed verbatim.
pub const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "Hashing threads (default: the CPU cores)",
    json:
        "Print one JSON document on stdout (each path's summary and problems) instead of human text",
};

/// Verify stores and packages: every digest, every size, the whole graph.
#[derive(Debug, Parser)]
#[command(name = "ferry-verify", version = ferry_cli::VERSION)]
pub struct Cli {
    /// Stores (OCI layout directories), package files, volumes, or volume-set directories to verify.
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
