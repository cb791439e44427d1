//! The command line of ferry-pack: its clap definition, shared by the binary,
//! `ferry completions` and the man pages (so `--help` and `man` never disagree).

use std::path::PathBuf;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};
use ferry_cli::registry_args::AccessArgs;

/// Shown after the options by `--help` (and in the man page).
pub const AFTER_HELP: &str = "\
Examples:
  ferry-pack --images images.txt --out bmpackages_1.30.0.tar.zst
  ferry-pack --image gcr.io/anthos-baremetal-release/foo:1.30.0 \\
      --image registry.example:5000/team/app@sha256:0123...cdef \\
      --platform linux/amd64 --referrers --out app.tar.zst
  ferry-pack --from app-oci-archive.tar --from /media/usb/ferry-store \\
      --compress xz --out bundle.tar.xz
  ferry-pack --images images.txt --out /media/staging/bundle \\
      --volume-size dvd5 --parity 2
  ferry-pack --images images.txt --out bundle.tar.zst --checksum
      (also writes bundle.tar.zst.sha256: sha256sum -c bundle.tar.zst.sha256)
  ferry-pack --images images.txt --out bundle.tar.zst \\
      --credentials-for registry.example:5000=admin:registry.pw --cacert ca.pem

images.txt: one reference per line (HOST/REPOSITORY:TAG or
HOST/REPOSITORY@sha256:DIGEST); # starts a comment; blank lines are ignored.
A reference must name its registry host: ferry-pack never assumes docker.io
(write docker.io/library/nginx:1.27). Each tag is resolved to a digest once,
and the package records both (ferry-package.json).

Every blob is pulled on --jobs workers into the cache (--cache DIR, default
$XDG_CACHE_HOME/ferry/pack, else ~/.cache/ferry/pack), hashed as it arrives and
checked against its digest before it is kept; what the cache holds is never
pulled again, so after any interruption (Ctrl-C, kill -9, network cut) rerunning
the same command pulls only what is missing. The package is then written from
the cache: oci-layout, index.json and ferry-package.json first, then manifests,
then blobs; the same images and options give the same bytes (zstd seekable by
default, --compress xz multi-block, or none: a plain tar that skopeo reads as
oci-archive:). It appears at --out only when complete.

--volume-size SIZE splits the package into a volume set for media with a size
limit: no file exceeds SIZE by a single byte; each volume is a tar (compressed
like the package) that verifies alone (ferry-verify VOLUME) and holds the
package metadata; a blob larger than the room left is cut into parts, each with
its own digest. --parity N adds N Reed-Solomon volumes: any N lost or damaged
volumes are rebuilt by ferry-verify/export/diff/push, which take the set's
directory or its files in any order.

Multi-arch indexes are kept whole. --platform linux/amd64 (repeatable) keeps only
those platforms: the packaged index is then a NEW one with another digest,
printed beside the source's. Pulls by tag get the new index; a pull by the
source index's digest is not served by the private registry.
--referrers brings signatures, SBOMs and attestations: the referrers API where
the registry has it, else the sha256-<hex> fallback tag, plus cosign-style
sha256-<hex>.sig/.att/.sbom tags.
--from takes a ferry store or OCI layout directory, an oci-archive or
docker-archive, or a package (anything ferry-export reads); its images must be
named by full references.

Credentials per source registry: --credentials-for HOST:PORT=USER:PASSWORD_FILE,
else --username/--password[-stdin], else --docker-config / DOCKER_CONFIG /
~/.docker/config.json (auths, credHelpers, credsStore), else containers
auth.json; a registry none of them names is read anonymously. --cacert-for
HOST:PORT=CA.pem, --cacert, --insecure-skip-tls-verify; a registry served over
plain HTTP: --plain-http HOST:PORT. HTTPS_PROXY, HTTP_PROXY, NO_PROXY are
honoured as curl does.
On a terminal: a progress bar; otherwise one line per image; --json: JSON lines,
the summary last.

Exit codes:
  0    the package is written
  2    error (bad reference, not found, digest mismatch, unreachable registry,
       TLS or auth failure); nothing is left at --out
  130  interrupted (Ctrl-C): rerun the same command to resume";

/// The tool's own help for the shared `--jobs`/`--json`, and its epilogue printed verbatim.
pub const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "Concurrent blob pulls (default 4); also the compression threads (at most the CPU cores)",
    json: "Print JSON lines on stdout (one event per line, the summary last) instead of human text",
};

fn volume_size(text: &str) -> Result<u64, String> {
    ferry_package::volume::parse_size(text)
}

/// `--compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    /// zstd, seekable (frames end at blob boundaries, seek table at the end).
    Zstd,
    /// xz, multi-block (blocks end at blob boundaries).
    Xz,
    /// A plain tar.
    None,
}

/// Build a package from registries, stores and archives.
#[derive(Debug, Parser)]
#[command(name = "ferry-pack", version = ferry_cli::VERSION)]
pub struct Cli {
    /// The package to write (written under a temporary name, renamed when complete).
    #[arg(long, value_name = "PACKAGE")]
    pub out: PathBuf,
    /// A file of image references, one per line (# comments, blank lines ignored; repeatable).
    #[arg(long, value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// An image reference: HOST/REPOSITORY:TAG or HOST/REPOSITORY@sha256:DIGEST (repeatable).
    #[arg(long, value_name = "REF")]
    pub image: Vec<String>,
    /// A local source: a ferry store or OCI layout directory, an oci-archive or docker-archive,
    /// or a package (repeatable).
    #[arg(long, value_name = "DIR_OR_ARCHIVE")]
    pub from: Vec<PathBuf>,
    /// Package compression.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compress: Compress,
    /// Keep only this platform of multi-arch indexes (repeatable; default: indexes kept whole).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Vec<String>,
    /// Split the package into volumes of at most SIZE bytes each (exact): bytes, 4.7GB, 4GiB,
    /// or dvd5, dvd9, bd25, bd50, cd700, fat32. --out then names the set:
    /// OUT.vol001-of-00N.tar.zst, ... (a .tar.zst/.tar.xz/.tar suffix of OUT is dropped).
    #[arg(long, value_name = "SIZE", value_parser = volume_size)]
    pub volume_size: Option<u64>,
    /// Add N Reed-Solomon parity volumes (OUT.par1-of-N.tar, ...): any N missing or damaged
    /// volumes of the set are rebuilt by every reading tool.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "volume_size")]
    pub parity: u32,
    /// Also write PACKAGE.sha256 beside the package (every volume and parity file of a set),
    /// in the format `sha256sum -c` reads; the whole-file hash costs about a CPU-second per
    /// 1.7 GB, so it is off unless asked for (`ferry-verify` checks every blob either way).
    #[arg(long)]
    pub checksum: bool,
    /// Bring each image's referrers (signatures, SBOMs, attestations) and cosign-style tags.
    #[arg(long)]
    pub referrers: bool,
    /// The cache store blobs are pulled into (default $XDG_CACHE_HOME/ferry/pack, else
    /// ~/.cache/ferry/pack).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// A source registry served over plain HTTP, not HTTPS (repeatable).
    #[arg(long, value_name = "HOST:PORT")]
    pub plain_http: Vec<String>,
    /// Credentials, TLS and timeouts of the source registries.
    #[command(flatten)]
    pub access: AccessArgs,
    /// Machine-readable output (`--json`).
    #[command(flatten)]
    pub output: OutputArgs,
    /// Parallelism (`--jobs`).
    #[command(flatten)]
    pub jobs: JobsArgs,
}
