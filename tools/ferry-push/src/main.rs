//! ferry-push: upload every image of a package or store to a private
//! registry, sending only what is missing, resumably. Thin binary over the
//! copy engine (`ferry_copy`: a package is a single-pass source, a store a
//! random-access one; the registry is the sink, wrapped in `DryRun` for
//! `--dry-run`) with the flags of `bmctl push images`.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_cli::progress::ByteProgress;
use ferry_cli::{human, Outcome};
use ferry_copy::plan::Destination;
use ferry_copy::stream::{copy_stream_to_many, StreamOutcome, Target};
use ferry_copy::{copy, CopyEvent, CopyOptions, CopyReport, DryRun, Sink, StoreSource};
use ferry_package::package_source::OneRead;
use ferry_package::volume::VolumeSet;
use ferry_push::cli::{Cli, CompressLayers, HELP};
use ferry_registry::credentials::CredentialSource;
use ferry_registry::meter::TransferMeter;
use ferry_registry::sink::{destination, JournalSessions, RegistrySink};
use ferry_registry::upload::{NoSessionLog, UploadOptions};

/// How a source name maps to one registry.
type NameMap<'a> = Box<dyn Fn(&str) -> Result<Destination, String> + Sync + 'a>;

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
    let many = cli.registry.private_registry.len() > 1;
    let conns = cli.registry.connect_all(move |host, msg| {
        let event = CopyEvent::Retry {
            message: msg.to_owned(),
        };
        print_event(&event, json, false, false, many.then_some(host));
    })?;
    let options = CopyOptions {
        jobs: cli.jobs.jobs.unwrap_or(4) as usize,
        force: cli.force,
        clean_holding: cli.clean_holding,
    };
    let tty = std::io::stderr().is_terminal();
    // Per registry: its name in output (when there are several), how names map there, events.
    let labels: Vec<Option<&str>> = conns
        .iter()
        .map(|c| many.then_some(c.target.host.as_str()))
        .collect();
    let maps: Vec<NameMap<'_>> = conns
        .iter()
        .map(|c| Box::new(move |name: &str| destination(&c.target, name)) as Box<_>)
        .collect();

    // A package is pushed in one read, whatever its order, to every registry at once.
    if cli.staging.is_none() && cli.compress_layers.is_none() {
        let about = |e: &dyn std::fmt::Display| ferry_cli::exit::about(&cli.source[0], e);
        // A volume set: opened (foreign volumes refused, missing ones rebuilt
        // or named) before anything is sent.
        let one = match OneRead::volume_set(&cli.source).map_err(|e| about(&e))? {
            Some(set) => {
                report_set(&set, json);
                Some(OneRead::of_set(set, &cli.source[0]))
            }
            None => OneRead::file(&cli.source[0]).map_err(|e| about(&e))?,
        };
        if let Some((stream, size)) = one.as_ref().map(OneRead::source) {
            let sent = Arc::new(TransferMeter::new());
            let bar = ByteProgress::start_with_blobs(
                "push",
                size,
                Arc::new(AtomicU64::new(0)),
                Some(sent.clone()),
                !json && !cli.dry_run,
            );
            let registries: Vec<RegistrySink<'_>> = conns
                .iter()
                .map(|c| {
                    RegistrySink::new(&c.client, &sent, &NoSessionLog, UploadOptions::default())
                        .with_holding(&c.target)
                })
                .collect();
            let dry: Vec<DryRun<'_>> = registries.iter().map(|r| DryRun::new(r)).collect();
            let printers: Vec<Box<dyn Fn(CopyEvent) + Sync + '_>> = labels
                .iter()
                .map(|label| {
                    Box::new(move |e: CopyEvent| print_event(&e, json, tty, verbose, *label))
                        as Box<_>
                })
                .collect();
            let targets: Vec<Target<'_>> = (0..conns.len())
                .map(|i| Target {
                    sink: if cli.dry_run {
                        &dry[i] as &dyn Sink
                    } else {
                        &registries[i]
                    },
                    map: &maps[i],
                    events: &printers[i],
                })
                .collect();
            let results = copy_stream_to_many(stream, &targets, options, bar.counter());
            bar.finish();
            if let (Some(Ok(StreamOutcome::NotStreamable(reason))), Some(OneRead::Set(..))) =
                (results.first(), &one)
            {
                anyhow::bail!(
                    "{}: the volume set cannot be pushed in one read ({reason})",
                    cli.source[0].display()
                );
            } else if let Some(Ok(StreamOutcome::NotStreamable(reason))) = results.first() {
                if json {
                    emit_json(&serde_json::json!({"event": "staging", "reason": reason}));
                } else {
                    eprintln!("ferry-push: cannot push {} in one read ({reason}); staging it once instead", cli.source[0].display());
                }
            } else {
                let results = results
                    .into_iter()
                    .map(|r| match r {
                        Ok(StreamOutcome::Copied(report)) => Ok(report),
                        Ok(StreamOutcome::NotStreamable(reason)) => {
                            Err(anyhow::anyhow!("{reason}"))
                        }
                        Err(e) => Err(ferry_cli::exit::about(&cli.source[0], e)),
                    })
                    .collect();
                let outcome = conclude(cli, &conns, results)?;
                if let Some(OneRead::Set(stream, _)) = one {
                    let set = stream.into_inner();
                    if !set.waiting.is_empty() {
                        anyhow::bail!(
                            "{}; the complete images are pushed: rerun with the missing volume(s) to push the rest",
                            set.missing_message().unwrap_or_default()
                        );
                    }
                }
                return Ok(outcome);
            }
        }
    }
    let source = ferry_cli::registry_args::open_source(
        "ferry-push",
        &cli.source[0],
        cli.staging.as_deref(),
        cli.jobs.resolve(),
        json,
    )?;
    uncompressed_layers(cli, &source, json)?;
    let total: u64 = source
        .store
        .walk_index()
        .map(|w| w.nodes.iter().map(|n| n.descriptor.size).sum())
        .unwrap_or(0)
        * conns.len() as u64;
    let total_sent = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(TransferMeter::with_total(total_sent.clone()));
    let bar = ByteProgress::start_with_blobs(
        "push",
        total,
        total_sent,
        Some(sent.clone()),
        !json && !cli.dry_run,
    );
    let upload = UploadOptions {
        monolithic_max: cli.monolithic_max_mib << 20,
        chunk_size: cli.chunk_mib.max(1) << 20,
    };
    let store = StoreSource::new(&source.store);
    // A store is read at random: every registry is pushed at once from it.
    let results: Vec<anyhow::Result<CopyReport>> = std::thread::scope(|scope| {
        let handles: Vec<_> = conns
            .iter()
            .zip(&maps)
            .zip(&labels)
            .map(|((conn, map), label)| {
                let (store, sent) = (&store, &sent);
                let source = &source;
                scope.spawn(move || -> anyhow::Result<CopyReport> {
                    let sessions = JournalSessions::replay(&source.store, &conn.target.host)?;
                    let registry = RegistrySink::new(&conn.client, sent, &sessions, upload);
                    let dry = DryRun::new(&registry);
                    let sink: &dyn Sink = if cli.dry_run { &dry } else { &registry };
                    let plan = store.plan(map)?;
                    Ok(copy(&plan, store, sink, options, &|e| {
                        // Blobs already there count as done on the total bar.
                        if let CopyEvent::BlobSkipped { size, .. } = &e {
                            sent.add(*size);
                        }
                        print_event(&e, json, tty, verbose, *label);
                    })?)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a push thread failed")))
            })
            .collect()
    });
    bar.finish();
    conclude(cli, &conns, results)
}

/// Docker-archive layers are plain tar: says what that costs, or (with
/// `--compress-layers`) compresses them in the staging store, printing each
/// image's new manifest digest. A store given as the source is never rewritten.
fn uncompressed_layers(
    cli: &Cli,
    source: &ferry_package::stage::Source,
    json: bool,
) -> anyhow::Result<()> {
    use ferry_package::compress_layers::{compress_layers, uncompressed_layers, LayerCompression};
    let about = |e| ferry_cli::exit::about(&cli.source[0], e);
    let Some(how) = cli.compress_layers else {
        let u = uncompressed_layers(&source.store).map_err(about)?;
        if u.layers > 0 {
            if json {
                emit_json(&serde_json::json!({"event": "uncompressed_layers",
                    "images": u.images, "layers": u.layers, "bytes": u.bytes}));
            } else {
                eprintln!(
                    "ferry-push: {} layer(s) of {} image(s) are uncompressed tar ({}), stored so by the registry; --compress-layers gzip|zstd compresses them first (new manifests)",
                    u.layers,
                    u.images,
                    human::bytes(u.bytes)
                );
            }
        }
        return Ok(());
    };
    if source.path == cli.source[0] {
        anyhow::bail!(
            "--compress-layers rewrites a package staged by ferry-push; {} is a store: export the package again or push without it",
            cli.source[0].display()
        );
    }
    let how = match how {
        CompressLayers::Gzip => LayerCompression::Gzip,
        CompressLayers::Zstd => LayerCompression::Zstd,
    };
    for r in compress_layers(&source.store, how).map_err(about)? {
        if json {
            emit_json(
                &serde_json::json!({"event": "compressed_layers", "image": r.name,
                "manifest": r.after.to_string(), "was": r.before.to_string(),
                "bytes_before": r.bytes_before, "bytes_after": r.bytes_after}),
            );
        } else {
            eprintln!(
                "ferry-push: {}: layers compressed ({} -> {}), new manifest {} (was {})",
                r.name,
                human::bytes(r.bytes_before),
                human::bytes(r.bytes_after),
                r.after,
                r.before
            );
        }
    }
    Ok(())
}

/// Prints each registry's summary (and mirror configuration) and decides the
/// outcome: with one registry its error is the tool's error; with several,
/// each failure is named and the run fails if any did (a rerun finishes only
/// what is missing, where it is missing).
fn conclude(
    cli: &Cli,
    conns: &[ferry_cli::registry_args::Connection],
    results: Vec<anyhow::Result<CopyReport>>,
) -> anyhow::Result<Outcome> {
    let many = conns.len() > 1;
    let mut failed = Vec::new();
    for (conn, result) in conns.iter().zip(results) {
        match result {
            Ok(report) => finish(cli, conn, &report),
            Err(e) if !many => return Err(e),
            Err(e) => {
                let host = &conn.target.host;
                if cli.output.json {
                    emit_json(
                        &serde_json::json!({"event": "error", "registry": host, "message": ferry_cli::exit::error_chain(&e)}),
                    );
                } else {
                    eprintln!(
                        "ferry-push: {host}: error: {}",
                        ferry_cli::exit::error_chain(&e)
                    );
                }
                failed.push(host.clone());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} registries failed ({}); the others are complete. Rerun the same command: it sends only what is missing where it is missing",
            failed.len(),
            conns.len(),
            failed.join(", ")
        );
    }
    Ok(Outcome::Clean)
}

/// Says which volumes were rebuilt and which are missing, before anything is sent.
fn report_set(set: &VolumeSet, json: bool) {
    for r in &set.rebuilt {
        let line = format!(
            "data volume {} of {} {}: rebuilt from {}",
            r.index, set.header.data_volumes, r.reason, r.from
        );
        if json {
            emit_json(
                &serde_json::json!({"event": "volume_rebuilt", "volume": r.index, "message": line}),
            );
        } else {
            eprintln!("ferry-push: {line}");
        }
    }
    if let Some(msg) = set.missing_message() {
        if json {
            emit_json(
                &serde_json::json!({"event": "volumes_missing", "missing": set.missing(), "message": msg}),
            );
        } else {
            eprintln!("ferry-push: {msg}; pushing the complete images now");
        }
    }
}

/// Prints one event: JSON lines with --json; otherwise a line per image off a
/// TTY (or with --verbose), a line per blob with --verbose, retries and
/// warnings on stderr.
fn print_event(e: &CopyEvent, json: bool, tty: bool, verbose: bool, registry: Option<&str>) {
    if json {
        match (registry, serde_json::to_value(e)) {
            (Some(host), Ok(mut v)) => {
                v["registry"] = serde_json::json!(host);
                emit_json(&v);
            }
            _ => emit_json(e),
        }
        return;
    }
    let at = registry.map(|h| format!("{h}: ")).unwrap_or_default();
    match e {
        CopyEvent::ImagePushed { target, digest, .. } if !tty || verbose => {
            println!("pushed {target}@{digest}")
        }
        CopyEvent::ImageUpToDate { target, digest, .. } if !tty || verbose => {
            println!("up to date {target}@{digest}")
        }
        CopyEvent::BlobUploaded {
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
        CopyEvent::BlobMounted {
            repository,
            digest,
            from,
            ..
        } if verbose => println!("  mounted {digest} into {repository} from {from}"),
        CopyEvent::BlobSkipped {
            repository, digest, ..
        } if verbose => println!("  present {digest} in {repository}"),
        CopyEvent::Retry { message } => eprintln!("ferry-push: {at}{message}"),
        CopyEvent::HoldingCleaned {
            repository,
            removed,
            kept,
        } => {
            if *kept == 0 {
                eprintln!("ferry-push: {at}removed {removed} blob(s) from {repository}")
            } else {
                eprintln!("ferry-push: {at}removed {removed} blob(s) from {repository}; the registry does not allow deleting the other {kept} (deletes disabled): they stay, linked only there")
            }
        }
        CopyEvent::ReadPath { path, reason } if path != "stream" || verbose => {
            eprintln!("ferry-push: {at}{path}: {reason}")
        }
        CopyEvent::ReferrerSkipped { digest, reason } => {
            eprintln!(
                "ferry-push: {at}warning: not pushing the unnamed artifact {digest}: {reason}"
            )
        }
        _ => {}
    }
}

/// Prints the summary (and, after a real push, the mirror configuration).
fn finish(cli: &Cli, conn: &ferry_cli::registry_args::Connection, report: &CopyReport) {
    let json = cli.output.json;

    if json {
        if cli.registry.private_registry.len() > 1 {
            emit_json(
                &serde_json::json!({"event": "summary", "registry": conn.target.host, "summary": report}),
            );
        } else {
            emit_json(&serde_json::json!({"event": "summary", "summary": report}));
        }
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
        let spec = ferry_cli::mirror_config::MirrorSpec::new(
            conn.target.clone(),
            upstream,
            conn.cacert.as_deref(),
            cred_config.as_deref(),
            false,
        );
        println!("\n{}", ferry_cli::mirror_config::push_summary(&spec));
    }
}
