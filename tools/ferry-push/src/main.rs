//! ferry-push: upload every image of a package or store to a private
//! registry, sending only what is missing, resumably. Thin binary over
//! `ferry_registry::push` with the flags of `bmctl push images`.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Parser;
use ferry_cli::args::{JobsArgs, OutputArgs};
use ferry_cli::progress::ByteProgress;
use ferry_cli::registry_args::RegistryArgs;
use ferry_cli::{human, Outcome};
use ferry_registry::credentials::CredentialSource;
use ferry_registry::meter::TransferMeter;
use ferry_registry::push::{push_store, PushEvent, PushOptions};
use ferry_registry::upload::UploadOptions;

const AFTER_HELP: &str = "\
Examples:
  ferry-push --source bmpackages_1.30.0.tar.xz \\
      --private-registry 10.0.0.5:5000/ns --cacert /etc/ferry/ca.pem \\
      --username admin --password-stdin < pw.txt
  ferry-push --dry-run --source /media/usb/ferry-store \\
      --private-registry 10.0.0.5:5000 --need-credential=false

Images keep their path and tag with the source host dropped and the namespace
prefixed: gcr.io/anthos-baremetal-release/foo:1.30.0
  -> 10.0.0.5:5000/ns/anthos-baremetal-release/foo:1.30.0.
Blobs already in the repository are not sent; blobs in another repository of
the registry are mounted; large blobs go in chunks recorded in the store's
journal, so rerunning the same command after any interruption resumes.
A package whose index.json and manifests come first is pushed straight from
its decompression stream: no scratch copy, blobs up to 24 MiB verified before
they are sent (larger ones hashed on the way), two or three uploads at once,
peak memory ~64 MiB plus the package's decompression window. Other packages
are staged once into PACKAGE.ferry-store (or --staging DIR, which also forces
staging).
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

const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "Concurrent blob uploads (default 4); also the decoder threads when a package is staged (default: the CPU cores)",
    json: "Print JSON lines on stdout (one event per line, the summary last) instead of human text",
};

/// Push images to a private registry (bmctl push images flags).
#[derive(Debug, Parser)]
#[command(name = "ferry-push", version)]
struct Cli {
    /// Package (.tar.xz, .tar.zst, .tar.gz, .tar, docker-archive) or store directory.
    #[arg(long, value_name = "PACKAGE_OR_STORE")]
    source: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Where a package is staged (default: PACKAGE.ferry-store beside it).
    #[arg(long, value_name = "DIR")]
    staging: Option<PathBuf>,
    /// Show what would be uploaded, mounted and skipped, without sending anything
    /// (a streamable package is read only as far as its manifests; nothing is staged).
    #[arg(long)]
    dry_run: bool,
    /// Re-check every blob and manifest, even of images whose tag already points
    /// at the package's digest (by default such images are complete and skipped).
    #[arg(long)]
    force: bool,
    /// Print every blob, not only every image.
    #[arg(short, long)]
    verbose: bool,
    /// Blobs up to this many MiB go in one request; larger ones in resumable chunks.
    #[arg(long, value_name = "MiB", default_value_t = 128, hide = true)]
    monolithic_max_mib: u64,
    /// Chunk size in MiB for large blobs.
    #[arg(long, value_name = "MiB", default_value_t = 64, hide = true)]
    chunk_mib: u64,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    jobs: JobsArgs,
}

fn main() -> ExitCode {
    let cli: Cli = ferry_cli::parse(&HELP);
    ferry_cli::run("ferry-push", || push(&cli))
}

fn emit_json(value: &impl serde::Serialize) {
    if let Ok(s) = serde_json::to_string(value) {
        println!("{s}");
    }
}

fn push(cli: &Cli) -> anyhow::Result<Outcome> {
    let json = cli.output.json;
    let verbose = cli.verbose;
    let conn = cli.registry.connect(move |msg| {
        if json {
            emit_json(&PushEvent::Retry {
                message: msg.to_owned(),
            });
        } else {
            eprintln!("ferry-push: {msg}");
        }
    })?;
    let jobs = cli.jobs.jobs.unwrap_or(4) as usize;
    let tty = std::io::stderr().is_terminal();
    let events = |e: PushEvent| {
        if json {
            emit_json(&e);
            return;
        }
        match &e {
            PushEvent::ImagePushed { target, digest, .. } if !tty || verbose => {
                println!("pushed {target}@{digest}")
            }
            PushEvent::ImageUpToDate { target, digest, .. } if !tty || verbose => {
                println!("up to date {target}@{digest}")
            }
            PushEvent::BlobUploaded {
                repository,
                digest,
                size,
                resumed_from,
            } if verbose => println!(
                "  uploaded {digest} ({}) to {repository}{}",
                human::bytes(*size),
                if *resumed_from > 0 {
                    format!(", resumed at {}", human::bytes(*resumed_from))
                } else {
                    String::new()
                }
            ),
            PushEvent::BlobMounted {
                repository,
                digest,
                from,
                ..
            } if verbose => println!("  mounted {digest} into {repository} from {from}"),
            PushEvent::BlobSkipped {
                repository, digest, ..
            } if verbose => println!("  present {digest} in {repository}"),
            PushEvent::Retry { message } => eprintln!("ferry-push: {message}"),
            PushEvent::ReferrerSkipped { digest, reason } => {
                eprintln!(
                    "ferry-push: warning: not pushing the unnamed artifact {digest}: {reason}"
                )
            }
            _ => {}
        }
    };

    // A package whose index and manifests come first is pushed straight from
    // its stream, with no scratch copy; otherwise it is staged once.
    if !cli.source.is_dir() && cli.staging.is_none() {
        let size = std::fs::metadata(&cli.source).map(|m| m.len()).unwrap_or(0);
        let sent = Arc::new(TransferMeter::new());
        let bar = ByteProgress::start_with_blobs(
            "push",
            size,
            Arc::new(AtomicU64::new(0)),
            Some(sent.clone()),
            !json && !cli.dry_run,
        );
        let outcome = ferry_transfer::stream_push::push_package_streaming(
            &cli.source,
            &conn.client,
            jobs,
            cli.force,
            cli.dry_run,
            bar.counter(),
            &sent,
            &events,
        );
        bar.finish();
        match outcome.map_err(|e| ferry_cli::exit::about(&cli.source, e))? {
            ferry_transfer::stream_push::StreamOutcome::Pushed(report) => {
                finish(cli, &conn, &report);
                return Ok(Outcome::Clean);
            }
            ferry_transfer::stream_push::StreamOutcome::NotStreamable(reason) => {
                if json {
                    emit_json(&serde_json::json!({"event": "staging", "reason": reason}));
                } else {
                    eprintln!("ferry-push: cannot push {} as a stream ({reason}); staging it once instead", cli.source.display());
                }
            }
        }
    }
    let source = ferry_cli::registry_args::open_source(
        "ferry-push",
        &cli.source,
        cli.staging.as_deref(),
        cli.jobs.resolve(),
        json,
    )?;

    let total: u64 = source
        .store
        .walk_index()
        .map(|w| w.nodes.iter().map(|n| n.descriptor.size).sum())
        .unwrap_or(0);
    let total_sent = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(TransferMeter::with_total(total_sent.clone()));
    let bar = ByteProgress::start_with_blobs(
        "push",
        total,
        total_sent,
        Some(sent.clone()),
        !json && !cli.dry_run,
    );
    let options = PushOptions {
        jobs,
        dry_run: cli.dry_run,
        force: cli.force,
        upload: UploadOptions {
            monolithic_max: cli.monolithic_max_mib << 20,
            chunk_size: cli.chunk_mib.max(1) << 20,
        },
    };
    let result = push_store(&source.store, &conn.client, &options, &sent, &events);
    bar.finish();
    let report = result?;
    finish(cli, &conn, &report);
    Ok(Outcome::Clean)
}

/// Prints the summary (and, after a real push, the mirror configuration).
fn finish(
    cli: &Cli,
    conn: &ferry_cli::registry_args::Connection,
    report: &ferry_registry::push::PushReport,
) {
    let json = cli.output.json;

    if json {
        emit_json(&serde_json::json!({"event": "summary", "summary": report}));
    } else if cli.dry_run {
        println!(
            "dry run: {} image(s); would upload {} blob(s) ({}), mount {}, skip {} already present; {} manifest(s) and {} tag(s) to push",
            report.images.len(),
            report.blobs_uploaded,
            human::bytes(report.bytes_uploaded),
            report.blobs_mounted,
            report.blobs_skipped,
            report.manifests_pushed,
            report.tags_set
        );
        for i in &report.images {
            println!("  {} -> {}", i.source, i.target);
        }
    } else {
        println!(
            "pushed {} image(s) to {} ({} already up to date): {} blob(s) uploaded ({}), {} mounted, {} already present, {} manifest(s), {} tag(s) in {:.1}s",
            report.images.len(),
            conn.target.host,
            report.images_up_to_date,
            report.blobs_uploaded,
            human::bytes(report.bytes_uploaded),
            report.blobs_mounted,
            report.blobs_skipped,
            report.manifests_pushed,
            report.tags_set,
            report.seconds
        );
    }
    if !cli.dry_run && !json {
        let upstream: BTreeSet<String> = report
            .images
            .iter()
            .filter_map(|i| {
                i.source
                    .parse::<ferry_store::Reference>()
                    .ok()
                    .map(|r| r.host)
            })
            .collect();
        let cred_config = match &conn.source {
            Some(CredentialSource::DockerConfig(p)) => Some(p.clone()),
            Some(CredentialSource::CredHelper { config, .. }) => Some(config.clone()),
            _ => None,
        };
        println!(
            "\n{}",
            ferry_registry::mirror::mirror_config(
                &conn.target,
                &upstream.into_iter().collect::<Vec<_>>(),
                cli.registry.cacert.as_deref(),
                cred_config.as_deref()
            )
        );
    }
}
