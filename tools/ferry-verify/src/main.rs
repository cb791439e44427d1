//! ferry-verify: re-check every digest of stores (OCI layouts) and packages,
//! for scheduled integrity audits. Thin binary over `ferry_store::audit` and
//! `ferry_package::audit`: parse arguments, run, print, map to an exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use ferry_cli::args::print_json;
use ferry_cli::progress::ByteProgress;
use ferry_cli::{human, Outcome};
use ferry_package::volume::{self, read::check_volume, VolumeSet};
use ferry_store::audit::{audit_store, AuditOptions, AuditReport, Problem, ProblemKind};
use ferry_verify::cli::{Cli, HELP};
use serde::Serialize;

#[derive(Serialize)]
struct PathReport {
    path: PathBuf,
    kind: &'static str,
    mode: &'static str,
    summary: Summary,
    problems: Vec<Problem>,
    info: ferry_store::audit::AuditInfo,
}

#[derive(Serialize)]
struct Summary {
    images: usize,
    blobs: u64,
    bytes: u64,
    seconds: f64,
    gb_per_s: f64,
    problems: usize,
    fast_checked_blobs: u64,
    fast_fallback_blobs: u64,
}

#[derive(Serialize)]
struct Document {
    paths: Vec<PathReport>,
    summary: Summary,
}

fn main() -> ExitCode {
    let cli: Cli = ferry_cli::parse(&HELP);
    ferry_cli::run("ferry-verify", || verify(&cli))
}

fn summary_of(r: &AuditReport) -> Summary {
    Summary {
        images: r.images,
        blobs: r.blobs,
        bytes: r.bytes,
        seconds: r.seconds,
        gb_per_s: if r.seconds > 0.0 {
            r.bytes as f64 / 1e9 / r.seconds
        } else {
            0.0
        },
        problems: r.problems.len(),
        fast_checked_blobs: r.fast_checked_blobs,
        fast_fallback_blobs: r.fast_fallback_blobs,
    }
}

fn verify(cli: &Cli) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let jobs = cli.jobs.resolve();
    let mut reports = Vec::new();
    // Volumes: one file alone is checked alone; a directory of volumes, or
    // several volume files, is checked as the set.
    let (volumes, paths): (Vec<&PathBuf>, Vec<&PathBuf>) = cli.paths.iter().partition(|p| {
        !ferry_package::audit::is_archive_dir(p) && volume::set::is_volume_source(p)
    });
    match volumes.as_slice() {
        [] => {}
        [one] if one.is_file() => reports.push(verify_volume(one)?),
        many => reports.push(verify_set(
            &many.iter().map(|p| (*p).clone()).collect::<Vec<_>>(),
            !cli.output.json,
        )?),
    }
    for path in paths {
        // A directory of image archives (one file per image) is a package, not a store.
        let archive_dir = ferry_package::audit::is_archive_dir(path);
        let is_store = path.is_dir() && !archive_dir;
        let report = if is_store {
            audit_store(
                path,
                &AuditOptions {
                    fast: cli.fast,
                    quarantine: cli.quarantine,
                    jobs: jobs as usize,
                },
            )
            .map_err(|e| ferry_cli::exit::about(path, e))?
        } else {
            let size = if archive_dir {
                0
            } else {
                std::fs::metadata(path)
                    .map_err(|e| ferry_cli::exit::about(path, e))?
                    .len()
            };
            let progress = ByteProgress::start("verify", size, !cli.output.json);
            let result = if archive_dir {
                ferry_package::audit::audit_archive_dir(path, jobs, progress.counter())
            } else {
                ferry_package::audit::audit_package(path, jobs, progress.counter())
            };
            progress.finish();
            let mut r = result.map_err(|e| ferry_cli::exit::about(path, e))?;
            if cli.fast {
                r.info.notes.push(
                    "--fast applies to stores; a package is always checked with its full digests"
                        .into(),
                );
            }
            if cli.quarantine {
                r.info
                    .notes
                    .push("--quarantine applies to stores; nothing was moved in a package".into());
            }
            r
        };
        let mode = if cli.fast && is_store { "fast" } else { "full" };
        reports.push(PathReport {
            path: path.clone(),
            kind: if is_store { "store" } else { "package" },
            mode,
            summary: summary_of(&report),
            problems: report.problems,
            info: report.info,
        });
    }
    let total = Summary {
        images: reports.iter().map(|r| r.summary.images).sum(),
        blobs: reports.iter().map(|r| r.summary.blobs).sum(),
        bytes: reports.iter().map(|r| r.summary.bytes).sum(),
        seconds: started.elapsed().as_secs_f64(),
        gb_per_s: 0.0,
        problems: reports.iter().map(|r| r.summary.problems).sum(),
        fast_checked_blobs: reports.iter().map(|r| r.summary.fast_checked_blobs).sum(),
        fast_fallback_blobs: reports.iter().map(|r| r.summary.fast_fallback_blobs).sum(),
    };
    let total = Summary {
        gb_per_s: if total.seconds > 0.0 {
            total.bytes as f64 / 1e9 / total.seconds
        } else {
            0.0
        },
        ..total
    };
    let problems = total.problems;
    if cli.output.json {
        print_json(&Document {
            paths: reports,
            summary: total,
        })?;
    } else {
        for r in &reports {
            print_human(r);
        }
    }
    Ok(if problems == 0 {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}

fn volume_problem(entry: Option<String>, detail: String) -> Problem {
    Problem {
        digest: None,
        entry,
        media_type: String::new(),
        images: Vec::new(),
        kind: ProblemKind::CorruptPackage { detail },
        quarantined_to: None,
    }
}

/// One volume, alone: its header, every item's digest, its content digest.
fn verify_volume(path: &Path) -> anyhow::Result<PathReport> {
    let started = Instant::now();
    let c = check_volume(path).map_err(|e| ferry_cli::exit::about(path, e))?;
    let seconds = started.elapsed().as_secs_f64();
    let mut info = ferry_store::audit::AuditInfo::default();
    info.notes.push(format!(
        "{} of set {} ({} bytes, volume size {})",
        c.header.label(),
        volume::short(&c.header.set_id),
        c.file_bytes,
        c.header.volume_size
    ));
    Ok(PathReport {
        path: path.to_path_buf(),
        kind: "volume",
        mode: "full",
        summary: Summary {
            images: 0,
            blobs: c.items as u64,
            bytes: c.bytes,
            seconds,
            gb_per_s: if seconds > 0.0 {
                c.bytes as f64 / 1e9 / seconds
            } else {
                0.0
            },
            problems: c.problems.len(),
            fast_checked_blobs: 0,
            fast_fallback_blobs: 0,
        },
        problems: c
            .problems
            .into_iter()
            .map(|d| volume_problem(None, d))
            .collect(),
        info,
    })
}

/// A whole set: every volume alone, missing or damaged ones rebuilt from
/// parity (and named), then the logical package audited as a package.
fn verify_set(paths: &[PathBuf], bar: bool) -> anyhow::Result<PathReport> {
    let started = Instant::now();
    let label = paths[0].clone();
    let mut set = VolumeSet::open(paths, None).map_err(|e| ferry_cli::exit::about(&label, e))?;
    let mut problems = Vec::new();
    let mut damaged = Vec::new();
    for (role, index, file) in set.files() {
        let c = check_volume(&file).map_err(|e| ferry_cli::exit::about(&file, e))?;
        if !c.problems.is_empty() {
            if role == volume::Role::Data {
                damaged.push((index, c.problems.join("; ")));
            }
            for d in c.problems {
                problems.push(volume_problem(Some(file.display().to_string()), d));
            }
        }
    }
    set.rebuild_damaged(&damaged)
        .map_err(|e| ferry_cli::exit::about(&label, e))?;
    let mut info = ferry_store::audit::AuditInfo::default();
    info.notes.push(format!(
        "volume set {}: {} data + {} parity volume(s), volume size {}",
        volume::short(&set.set_id),
        set.header.data_volumes,
        set.header.parity_volumes,
        set.header.volume_size
    ));
    for r in &set.rebuilt {
        let line = format!(
            "data volume {} of {} {}: rebuilt from {}",
            r.index, set.header.data_volumes, r.reason, r.from
        );
        if r.reason == "missing" {
            problems.push(volume_problem(None, line.clone()));
        }
        info.notes.push(line);
    }
    let mut report = None;
    if let Some(msg) = set.missing_message() {
        problems.push(volume_problem(None, msg));
    } else {
        let size = set
            .manifest
            .entries
            .last()
            .map_or(0, |e| e.offset + e.size + 1024);
        let progress = ByteProgress::start("verify", size, bar);
        let mut reader = set.reader();
        let r = ferry_package::audit::audit_volume_set(&mut reader, &label, progress.counter());
        progress.finish();
        report = Some(r.map_err(|e| ferry_cli::exit::about(&label, e))?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (images, blobs, bytes) = report
        .as_ref()
        .map_or((0, 0, 0), |r| (r.images, r.blobs, r.bytes));
    if let Some(r) = report {
        problems.extend(r.problems);
        info.notes.extend(r.info.notes);
    }
    Ok(PathReport {
        path: label,
        kind: "volume set",
        mode: "full",
        summary: Summary {
            images,
            blobs,
            bytes,
            seconds,
            gb_per_s: if seconds > 0.0 {
                bytes as f64 / 1e9 / seconds
            } else {
                0.0
            },
            problems: problems.len(),
            fast_checked_blobs: 0,
            fast_fallback_blobs: 0,
        },
        problems,
        info,
    })
}

fn print_human(r: &PathReport) {
    let s = &r.summary;
    println!(
        "{} ({}, {} check): {} image(s), {} blob(s), {} in {:.2}s ({:.2} GB/s): {}",
        r.path.display(),
        r.kind,
        r.mode,
        s.images,
        s.blobs,
        human::bytes(s.bytes),
        s.seconds,
        s.gb_per_s,
        if r.problems.is_empty() {
            "OK".to_string()
        } else {
            format!("{} PROBLEM(S)", r.problems.len())
        }
    );
    for p in &r.problems {
        println!("  {}", describe(p));
    }
    for note in &r.info.notes {
        println!("  note: {note}");
    }
    if !r.info.unreferenced_blobs.is_empty() || !r.info.leftover_files.is_empty() {
        println!(
            "  info: {} unreferenced blob(s), {} leftover file(s) (not failures)",
            r.info.unreferenced_blobs.len(),
            r.info.leftover_files.len()
        );
    }
}

fn describe(p: &Problem) -> String {
    let what = p.kind.to_string();
    let mut s = match (&p.digest, &p.entry) {
        (Some(d), Some(e)) => format!("{d} (entry {e}): {what}"),
        (Some(d), None) => format!("{d}: {what}"),
        (None, Some(e)) => format!("entry {e}: {what}"),
        (None, None) => what,
    };
    if !p.media_type.is_empty() {
        s.push_str(&format!(" [{}]", p.media_type));
    }
    if !p.images.is_empty() {
        s.push_str(&format!(" used by {}", p.images.join(", ")));
    }
    if let Some(q) = &p.quarantined_to {
        s.push_str(&format!("; moved to {}", q.display()));
    }
    s
}
