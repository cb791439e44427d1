//! ferry-diff: compare a private registry with a package or store, image by
//! image, at the mapped references ferry-push would use. Thin binary over
//! `ferry_registry::diff`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ferry_cli::args::{print_json, JobsArgs, OutputArgs};
use ferry_cli::registry_args::RegistryArgs;
use ferry_cli::{human, Outcome};
use ferry_registry::diff::{diff_store, DiffOptions, Status};

const AFTER_HELP: &str = "\
Examples:
  ferry-diff --source bmpackages_1.30.0.tar.xz \\
      --private-registry 10.0.0.5:5000/ns --cacert ca.pem \\
      --username admin --password-stdin < pw.txt
  ferry-diff --source /media/usb/ferry-store \\
      --private-registry 10.0.0.5:5000 --need-credential=false --json --extra
  # re-hash the registry's copies:
  ferry-diff --deep --source /media/usb/ferry-store \\
      --private-registry 10.0.0.5:5000

Statuses: in-sync (tag at the package's digest, everything present), missing
(tag or repository absent), differs (tag at another digest), incomplete (right
digest, but a child manifest or blob is absent, or corrupt with --deep; repair
with `ferry-push --force`, which re-checks images whose tag looks up to date).
'push bytes' is exactly what ferry-push would upload. Same credential, TLS and
proxy options as ferry-push.

Exit codes:
  0    every image is in sync
  1    differences found
  2    error (unreachable registry, TLS or auth failure, bad input)
  130  interrupted (Ctrl-C)";

const HELP: ferry_cli::ToolHelp = ferry_cli::ToolHelp {
    after_help: AFTER_HELP,
    jobs: "Concurrent registry requests (default 16); also the decoder threads when a package is staged (default: the CPU cores)",
    json: "Print one JSON document on stdout (every image's status) instead of human text",
};

/// Compare a private registry with a package: what is missing, what differs.
#[derive(Debug, Parser)]
#[command(name = "ferry-diff", version)]
struct Cli {
    /// Package (.tar.xz, .tar.zst, .tar.gz, .tar, docker-archive) or store directory.
    #[arg(long, value_name = "PACKAGE_OR_STORE")]
    source: PathBuf,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Download every blob of the package's images from the registry and re-hash it.
    #[arg(long)]
    deep: bool,
    /// Also list tags in the mapped repositories that the package does not have.
    #[arg(long)]
    extra: bool,
    /// Where a package is staged (default: PACKAGE.ferry-store beside it).
    #[arg(long, value_name = "DIR")]
    staging: Option<PathBuf>,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    jobs: JobsArgs,
}

fn main() -> ExitCode {
    let cli: Cli = ferry_cli::parse(&HELP);
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
