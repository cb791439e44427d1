//! ferry-export: unpack an image package into a store (an OCI image layout).
//!
//! Thin binary: parses arguments, checks free space, calls
//! `ferry_package::import_package`, prints a summary and maps the result to an
//! exit code. Rerunning the same command after any interruption resumes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use ferry_cli::args::print_json;
use ferry_cli::progress::ByteProgress;
use ferry_cli::{human, Outcome};
use ferry_export::cli::{Cli, HELP};
use ferry_package::volume::{self, VolumeSet};
use ferry_package::{estimate, import_package, import_volume_set, ImportOptions, PresentCheck};
use ferry_store::audit::ProblemKind;
use ferry_store::Store;
use serde::Serialize;

#[derive(Serialize)]
struct ImageSummary {
    name: String,
    digest: String,
    media_type: String,
}

#[derive(Serialize)]
struct Summary {
    source: PathBuf,
    destination: PathBuf,
    format: String,
    images: Vec<ImageSummary>,
    blobs_written: u64,
    blobs_present: u64,
    bytes_written: u64,
    bytes_present: u64,
    /// Blobs that were in the store but failed their check, rewritten from the package.
    blobs_replaced: Vec<ReplacedSummary>,
    seconds: f64,
}

#[derive(Serialize)]
struct ReplacedSummary {
    digest: String,
    /// What was wrong with the store's copy.
    found: ProblemKind,
}

fn main() -> ExitCode {
    let cli: Cli = ferry_cli::parse(&HELP);
    ferry_cli::run("ferry-export", || export(&cli))
}

fn export(cli: &Cli) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let source = &cli.source[0];
    // A volume set: opened (foreign volumes refused, missing ones rebuilt or
    // named) before anything is written.
    let mut set = if cli.source.len() > 1 || volume::set::is_volume_source(source) {
        let set =
            VolumeSet::open(&cli.source, None).map_err(|e| ferry_cli::exit::about(source, e))?;
        report_set(&set, cli.output.json);
        Some(set)
    } else {
        None
    };
    std::fs::create_dir_all(&cli.to)
        .with_context(|| format!("cannot create {}", cli.to.display()))?;
    let store = Store::open_for_write(&cli.to)?;
    let (format, unpacked, source_size) = match &set {
        Some(set) => {
            let tar = set
                .manifest
                .entries
                .last()
                .map_or(0, |e| e.offset + e.size + 1024);
            (None, tar, tar)
        }
        None => {
            let format = ferry_package::detect(source)?;
            let unpacked = estimate::unpacked_size(source, format);
            let size = if source.is_dir() {
                unpacked
            } else {
                std::fs::metadata(source)?.len()
            };
            (Some(format), unpacked, size)
        }
    };
    let _ = format;
    estimate::check_space(&cli.to, unpacked)?;
    let progress = ByteProgress::start("export", source_size, !cli.output.json);
    let options = ImportOptions {
        progress: progress.counter(),
        threads: cli.jobs.resolve(),
        present_check: if cli.repair {
            PresentCheck::Full
        } else {
            PresentCheck::Recorded
        },
    };
    let result = match &mut set {
        Some(set) => import_volume_set(set, source, &store, &options),
        None => import_package(source, &store, &options),
    };
    progress.finish();
    let report = result.map_err(|e| {
        let hint = if e.is_disk_full() {
            let free = ferry_store::space::available_bytes(&cli.to).unwrap_or(0);
            format!(
                "\n  the package unpacks to about {}; {} free now on {}. Free space and rerun the same command: verified blobs are kept.",
                human::bytes(unpacked),
                human::bytes(free),
                cli.to.display()
            )
        } else {
            String::new()
        };
        ferry_cli::exit::about(source, format!("{e}{hint}"))
    })?;

    let seconds = started.elapsed().as_secs_f64();
    let c = report.counts;
    let summary = Summary {
        source: source.clone(),
        destination: cli.to.clone(),
        format: report.format.to_string(),
        images: report
            .images
            .iter()
            .map(|i| ImageSummary {
                name: i.name.clone(),
                digest: i.descriptor.digest.to_string(),
                media_type: i.descriptor.media_type.clone(),
            })
            .collect(),
        blobs_written: c.blobs_written,
        blobs_present: c.blobs_present,
        bytes_written: c.bytes_written,
        bytes_present: c.bytes_present,
        blobs_replaced: report
            .replaced
            .iter()
            .map(|r| ReplacedSummary {
                digest: r.digest.to_string(),
                found: r.found.clone(),
            })
            .collect(),
        seconds,
    };
    if cli.output.json {
        print_json(&summary)?;
    } else {
        println!(
            "exported {} image(s) from {} ({}) to {}: {} blob(s) written ({}), {} already present ({}), {:.1}s, {:.0} MB/s",
            summary.images.len(),
            source.display(),
            if set.is_some() { "volume set".to_owned() } else { summary.format.clone() },
            cli.to.display(),
            c.blobs_written,
            human::bytes(c.bytes_written),
            c.blobs_present,
            human::bytes(c.bytes_present),
            seconds,
            human::rate_mb_s(c.bytes_written + c.bytes_present, seconds),
        );
        for r in &summary.blobs_replaced {
            println!(
                "  replaced {} from the package: the store's copy failed its check ({})",
                r.digest, r.found
            );
        }
    }
    if let Some(set) = &set {
        if !set.waiting.is_empty() {
            anyhow::bail!(
                "{}; rerun with the missing volume(s) to export the rest (what is exported now is kept)",
                set.missing_message().unwrap_or_default()
            );
        }
    }
    Ok(Outcome::Clean)
}

/// Says which volumes were rebuilt and which are missing, before anything is written.
fn report_set(set: &VolumeSet, json: bool) {
    if json {
        return;
    }
    for r in &set.rebuilt {
        eprintln!(
            "ferry-export: data volume {} of {} {}: rebuilt from {}",
            r.index, set.header.data_volumes, r.reason, r.from
        );
    }
    if let Some(msg) = set.missing_message() {
        eprintln!("ferry-export: {msg}; exporting the complete images now");
    }
}
