//! ferry-diff: compare a private registry with a package or store, image by
//! image, at the mapped references ferry-push would use. Thin binary over
//! `ferry_registry::diff`.

use std::process::ExitCode;

use clap::Parser;
use ferry_cli::args::print_json;
use ferry_cli::{human, Outcome};
use ferry_diff::cli::Cli;
use ferry_registry::diff::{diff_store, DiffOptions, Status};

fn main() -> ExitCode {
    let cli = Cli::parse();
    ferry_cli::run("ferry-diff", || diff(&cli))
}

fn diff(cli: &Cli) -> anyhow::Result<Outcome> {
    let json = cli.output.json;
    let conn = cli.registry.connect(move |msg| {
        if !json {
            eprintln!("ferry-diff: {msg}");
        }
    })?;
    let source = ferry_cli::registry_args::open_source(
        "ferry-diff",
        &cli.source,
        cli.staging.as_deref(),
        cli.jobs.resolve(),
        json,
    )?;
    let options = DiffOptions {
        jobs: cli.jobs.jobs.unwrap_or(16) as usize,
        deep: cli.deep,
        extra: cli.extra,
    };
    let report = diff_store(&source.store, &conn.client, &options)?;
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
