//! ferry-diff: compare a private registry with a package or store, image by
//! image, at the mapped references ferry-push would use. Thin binary over
//! the copy engine's comparison (`ferry_copy::compare`: a plan against the
//! registry's reads). A package is read only as far as its manifests, and
//! nothing is written (no staging copy).

use std::process::ExitCode;

use ferry_cli::args::print_json;
use ferry_cli::{human, Outcome};
use ferry_copy::compare::{compare, DiffOptions, Status};
use ferry_copy::stream::read_plan;
use ferry_copy::StoreSource;
use ferry_diff::cli::{Cli, HELP};
use ferry_package::package_source::OneRead;
use ferry_registry::meter::TransferMeter;
use ferry_registry::sink::{destination, RegistrySink};

fn main() -> ExitCode {
    let cli: Cli = ferry_cli::parse(&HELP);
    ferry_cli::run("ferry-diff", || diff(&cli))
}

/// Registry requests in flight by default: HEADs are cheap for the registry and
/// a slow link is all round trips. Measured (BENCHMARKS.md, 50 ms RTT, 1,102
/// requests): 4.15 s with 16, 1.93 s with 64; on loopback the registry's CPU
/// bounds it either way.
const DEFAULT_REQUESTS: u32 = 64;

fn diff(cli: &Cli) -> anyhow::Result<Outcome> {
    let json = cli.output.json;
    let conn = cli.registry.connect(move |msg| {
        if !json {
            eprintln!("ferry-diff: {msg}");
        }
    })?;
    let options = DiffOptions {
        jobs: cli.jobs.jobs.unwrap_or(DEFAULT_REQUESTS) as usize,
        deep: cli.deep,
        extra: cli.extra,
    };
    let map = |name: &str| destination(&conn.target, name);
    let meter = TransferMeter::new();
    let sink = RegistrySink::reading(&conn.client, &meter);
    // A package is read once, as far as its manifests: no staging copy.
    let mut planned = None;
    if cli.staging.is_none() {
        let about = |e: &dyn std::fmt::Display| ferry_cli::exit::about(&cli.source[0], e);
        // A volume set is read as its logical package (missing volumes rebuilt
        // from parity first, or named).
        let one = match OneRead::volume_set(&cli.source).map_err(|e| about(&e))? {
            Some(set) => {
                if let Some(msg) = set.missing_message() {
                    anyhow::bail!("{}: {msg}", cli.source[0].display());
                }
                if !json {
                    for r in &set.rebuilt {
                        eprintln!(
                            "ferry-diff: data volume {} {}: rebuilt from {}",
                            r.index, r.reason, r.from
                        );
                    }
                }
                Some(OneRead::of_set(set, &cli.source[0]))
            }
            None => OneRead::file(&cli.source[0]).map_err(|e| about(&e))?,
        };
        if let Some((stream, size)) = one.as_ref().map(OneRead::source) {
            let bar = ferry_cli::progress::ByteProgress::start("reading", size, !json);
            let read = read_plan(stream, &map, bar.counter());
            bar.finish();
            match read.map_err(|e| ferry_cli::exit::about(&cli.source[0], e))? {
                Ok(plan) => planned = Some(plan),
                Err(reason) if !json => eprintln!(
                    "ferry-diff: cannot read {} in one pass ({reason}); staging it once instead",
                    cli.source[0].display()
                ),
                Err(_) => {}
            }
        }
    }
    let report = match planned {
        Some(plan) => compare(&plan, &sink, &options)?,
        None => {
            let source = ferry_cli::registry_args::open_source(
                "ferry-diff",
                &cli.source[0],
                cli.staging.as_deref(),
                cli.jobs.resolve(),
                json,
            )?;
            let store = StoreSource::new(&source.store);
            compare(&store.plan(map)?, &sink, &options)?
        }
    };
    if json {
        print_json(&report)?;
    } else {
        let width = report
            .images
            .iter()
            .map(|i| i.source.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let twidth = report
            .images
            .iter()
            .map(|i| i.target.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!(
            "{:<width$}  {:<twidth$}  {:<10}  MISSING",
            "IMAGE", "TARGET", "STATUS"
        );
        for i in &report.images {
            let status = match i.status {
                Status::InSync => "in-sync",
                Status::Missing => "missing",
                Status::Differs => "differs",
                Status::Incomplete => "incomplete",
            };
            println!(
                "{:<width$}  {:<twidth$}  {:<10}  {}",
                i.source,
                i.target,
                status,
                if i.missing.is_empty() {
                    "-".to_owned()
                } else {
                    format!(
                        "{} item(s), {}",
                        i.missing.len(),
                        human::bytes(i.missing_bytes)
                    )
                }
            );
            if i.status == Status::Differs {
                println!(
                    "    registry has {}, package has {}",
                    i.actual_digest
                        .as_ref()
                        .map(|d| d.to_string())
                        .unwrap_or_default(),
                    i.expected_digest
                );
            }
            if i.status == Status::Incomplete {
                for m in &i.missing {
                    println!(
                        "    absent: {} ({}, {})",
                        m.digest,
                        m.media_type,
                        human::bytes(m.size)
                    );
                }
            }
            for c in &i.corrupt {
                println!(
                    "    CORRUPT in the registry: {} serves content hashing to {}",
                    c.digest, c.actual
                );
            }
        }
        let s = &report.summary;
        println!(
            "{} image(s): {} in sync, {} missing, {} differ, {} incomplete; a push would send {} blob(s), {} ({:.2}s{})",
            s.images,
            s.in_sync,
            s.missing,
            s.differs,
            s.incomplete,
            s.push_blobs,
            human::bytes(s.push_bytes),
            s.seconds,
            if cli.deep { format!(", {} re-hashed", human::bytes(s.deep_checked_bytes)) } else { String::new() }
        );
        if let Some(extra) = &report.extra_tags {
            for t in extra {
                println!(
                    "extra: {}/{}:{} is not in the package",
                    conn.target.host, t.repository, t.tag
                );
            }
        }
    }
    Ok(if report.in_sync() {
        Outcome::Clean
    } else {
        Outcome::Findings
    })
}
