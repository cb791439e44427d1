//! ferry-mirror-config: write (or print) the mirror configuration of every
//! container runtime for a private registry, without pushing. Thin binary over
//! `ferry_cli::mirror_config`: parse, find the upstream hosts, render, write.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use ferry_cli::mirror_config::{render, to_text, MirrorSpec};
use ferry_copy::stream::read_plan;
use ferry_copy::StoreSource;
use ferry_mirror_config::cli::{Cli, HELP};
use ferry_package::package_source::PackageStream;
use ferry_registry::sink::destination;
use ferry_registry::target::Target;

fn main() -> ExitCode {
    let cli: Cli = ferry_cli::parse(&HELP);
    ferry_cli::run("ferry-mirror-config", || mirror_config(&cli))
}

fn mirror_config(cli: &Cli) -> anyhow::Result<ferry_cli::Outcome> {
    let target = Target::parse(&cli.private_registry)
        .with_context(|| format!("--private-registry {}", cli.private_registry))?;
    let mut upstream = cli.upstream.clone();
    if let Some(source) = &cli.source {
        upstream.extend(upstream_hosts(source, &target)?);
    }
    let spec = MirrorSpec::new(
        target,
        upstream,
        cli.cacert.as_deref(),
        cli.pull_credential_config.as_deref(),
        cli.air_gap,
    );
    let mut printed = Vec::new();
    for &format in &cli.format.0 {
        let files = render(&spec, format)?;
        match &cli.out {
            Some(dir) => {
                for f in &files {
                    let path = dir.join(&f.path);
                    if let Some(parent) = path.parent() {
                        std::fs::create_dir_all(parent)
                            .with_context(|| format!("creating {}", parent.display()))?;
                    }
                    std::fs::write(&path, &f.contents)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote {}", path.display());
                }
            }
            None => printed.push(to_text(format, &files)),
        }
    }
    if !printed.is_empty() {
        print!("{}", printed.join("\n"));
    }
    Ok(ferry_cli::Outcome::Clean)
}

/// The hosts of `source`'s image names (`gcr.io` of `gcr.io/a/b:1`): a package
/// read once as far as its manifests, else opened as ferry-push opens it.
fn upstream_hosts(source: &Path, target: &Target) -> anyhow::Result<BTreeSet<String>> {
    let map = |name: &str| destination(target, name);
    let mut planned = None;
    if let Some(stream) =
        PackageStream::open(source).map_err(|e| ferry_cli::exit::about(source, e))?
    {
        let counter = Default::default();
        if let Ok(plan) =
            read_plan(&stream, &map, counter).map_err(|e| ferry_cli::exit::about(source, e))?
        {
            planned = Some(plan);
        }
    }
    let plan = match planned {
        Some(plan) => plan,
        None => {
            let opened = ferry_cli::registry_args::open_source(
                "ferry-mirror-config",
                source,
                None,
                1,
                false,
            )?;
            StoreSource::new(&opened.store).plan(map)?
        }
    };
    let hosts: BTreeSet<String> = plan
        .images
        .iter()
        .filter_map(|i| i.source.parse::<ferry_store::Reference>().ok())
        .map(|r| r.host)
        .collect();
    anyhow::ensure!(
        !hosts.is_empty(),
        "{}: no image name with a host (give --upstream HOST)",
        source.display()
    );
    Ok(hosts)
}
