//! ferry-push: upload every image of a package or store to a private
//! registry, sending only what is missing, resumably. Thin binary over
//! `ferry_registry::push` with the flags of `bmctl push images`.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use clap::Parser;
use ferry_cli::progress::ByteProgress;
use ferry_cli::{human, Outcome};
use ferry_push::cli::Cli;
use ferry_registry::credentials::CredentialSource;
use ferry_registry::meter::TransferMeter;
use ferry_registry::push::{push_store, PushEvent, PushOptions};
use ferry_registry::upload::UploadOptions;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        match outcome.map_err(|e| anyhow::anyhow!("{}: {e}", cli.source.display()))? {
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
