//! The command line of ferry-push: its clap definition, shared by the binary,
//! `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};
use ferry_cli::registry_args::RegistryArgs;

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Examples:
  ferry-push --source bmpackages_1.30.0.tar.xz \\
      --private-registry 10.0.0.5:5000/ns --cacert /etc/ferry/ca.pem \\
      --username admin --password-stdin < pw.txt
  ferry-push --dry-run --source /media/usb/ferry-store \\
      --private-registry 10.0.0.5:5000 --need-credential=false
  ferry-push --source bmpackages_1.30.0.tar.xz \\
      --private-registry 10.0.0.5:5000/ns --private-registry 10.1.0.5:5000/ns \\
      --cacert ca.pem --credentials-for 10.0.0.5:5000=admin:a.pw \\
      --credentials-for 10.1.0.5:5000=admin:b.pw

Images keep their path and tag with the source host dropped and the namespace
prefixed: gcr.io/anthos-baremetal-release/foo:1.30.0
  -> 10.0.0.5:5000/ns/anthos-baremetal-release/foo:1.30.0.
Blobs already in the repository are not sent; blobs in another repository of
the registry are mounted; large blobs go in chunks recorded in the store's
journal, so rerunning the same command after any interruption resumes.
A package is pushed in one read, with no scratch copy: when its index.json and
manifests come first, blobs go straight from its decompression stream (blobs up
to 24 MiB verified before they are sent, larger ones hashed on the way, two or
three uploads at once, peak memory ~64 MiB plus the decompression window); when
index.json comes last (Hauler, Zarf, tar -c of a layout), blobs wait in the
holding repository NAMESPACE/ferry-holding as they are read and are mounted into
their images' repositories once index.json arrives (a registry that refuses
mounts gets a second read; still no disk). The path taken is printed. Only a
docker-archive, or a package of image archives (one per image), is staged once
into PACKAGE.ferry-store (--staging DIR forces staging);
its layers are plain tar: the bytes that costs are printed, and --compress-layers
gzip|zstd compresses them before the push (new manifests, digests printed).
A volume set (ferry-pack --volume-size) is pushed the same way, read volume by
volume in one pass: give its directory or its files in any order. Missing or
damaged volumes are rebuilt from parity first (and named); a volume of another
set is refused before anything is sent. With more volumes missing than parity
rebuilds, every complete image is pushed and the others are named with the
volumes they wait for (exit 2); rerun with them to push the rest.
Several registries: give --private-registry once per registry; the package is
read once and pushed to all of them at once, each with its own CA (--cacert-for
HOST:PORT=CA.pem) and credentials (--credentials-for HOST:PORT=USER:PASSWORD_FILE);
one that fails does not stop the others, and a rerun finishes only what is missing.
On a terminal: a total bar plus one bar per blob in flight; --json: JSON lines.
Referrers (signatures, SBOMs, attestations: unnamed artifacts whose subject
is an image) are pushed with their image and listed under the subject's
fallback tag sha256-<hex>, which oras and cosign read.
Credentials: --username/--password[-stdin], else --docker-config /
DOCKER_CONFIG / ~/.docker/config.json (auths, credHelpers, credsStore), else
containers auth.json (REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR,
~/.config/containers), else a prompt on a TTY.
HTTPS_PROXY, HTTP_PROXY (http_proxy), NO_PROXY are honoured as curl does.

Exit codes:
  0    every image is in the registry
  2    error (bad input, unreachable registry, TLS or auth failure, refused upload)
  130  interrupted (Ctrl-C): rerun the same command to resume";

/// The tool's own help for the shared `--jobs`/`--json`, and its epilogue printed verbatim.
pub const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "Concurrent blob uploads (default 4); also the decoder threads when a package is staged (default: the CPU cores)",
    json: "Print JSON lines on stdout (one event per line, the summary last) instead of human text",
};

/// `--compress-layers`: how uncompressed layers are compressed before a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompressLayers {
    /// gzip: read by every runtime.
    Gzip,
    /// zstd: smaller, faster to pull; containerd 1.5+, Podman 3+.
    Zstd,
}

/// Push images to a private registry (bmctl push images flags).
#[derive(Debug, Parser)]
#[command(name = "ferry-push", version = ferry_cli::VERSION)]
pub struct Cli {
    /// Package (.tar.xz, .tar.zst, .tar.gz, .tar, docker-archive) or store directory,
    /// or a volume set: its directory, or its volume files in any order.
    #[arg(long, value_name = "PACKAGE_OR_STORE", num_args = 1.., required = true)]
    pub source: Vec<PathBuf>,
    /// Registry address, TLS and credential options (shared with the other registry tools).
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Stage the package into DIR and push from there (by default only a docker-archive is staged, into PACKAGE.ferry-store).
    #[arg(long, value_name = "DIR")]
    pub staging: Option<PathBuf>,
    /// Show what would be uploaded, mounted and skipped, without sending anything
    /// (a package is read once and never staged: only as far as its manifests when they come first).
    #[arg(long)]
    pub dry_run: bool,
    /// Re-check every blob and manifest, even of images whose tag already points
    /// at the package's digest (by default such images are complete and skipped).
    #[arg(long)]
    pub force: bool,
    /// After a complete push of a package whose index.json comes last, remove its blobs from
    /// NAMESPACE/ferry-holding where the registry allows deletes (kept by default: the registry
    /// stores each blob once, and a rerun then finds every blob with one request).
    #[arg(long)]
    pub clean_holding: bool,
    /// Compress the layers a docker-archive carries as plain tar (docker save, podman save)
    /// with gzip or zstd before pushing, so that the registry does not store them uncompressed;
    /// the package is staged, and each such image gets a new manifest, whose digest is printed.
    #[arg(
        long,
        value_name = "gzip|zstd",
        value_enum,
        hide_possible_values = true
    )]
    pub compress_layers: Option<CompressLayers>,
    /// Print every blob, not only every image.
    #[arg(short, long)]
    pub verbose: bool,
    /// Blobs up to this many MiB go in one request; larger ones in resumable chunks.
    #[arg(long, value_name = "MiB", default_value_t = 128, hide = true)]
    pub monolithic_max_mib: u64,
    /// Chunk size in MiB for large blobs.
    #[arg(long, value_name = "MiB", default_value_t = 64, hide = true)]
    pub chunk_mib: u64,
    /// Machine-readable output (`--json`).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Parallelism (`--jobs`).
    #[command(flatten)]
    pub jobs: JobsArgs,
}
