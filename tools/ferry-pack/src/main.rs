//! ferry-pack: build a package on the connected side. Thin binary: parse,
//! gather the images into the cache store (`ferry_gather`, on the copy
//! engine), write the package from it (`ferry_package::pack`), render.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_cli::progress::ByteProgress;
use ferry_cli::registry_args::WithoutCredential;
use ferry_cli::{human, Outcome};
use ferry_copy::CopyEvent;
use ferry_gather::{
    gather_local, gather_registries, gather_registries_alongside, parse_reference, read_list,
    Gathered, PackEvent, PackOptions, PlatformSpec,
};
use ferry_pack::cli::{Cli, Compress, HELP};
use ferry_package::pack::{
    write_checksum_file, write_package, write_package_as_pulled, Compression, WriteOptions,
};
use ferry_package::volume::{write_volume_set, Role, VolumeOptions};
use ferry_registry::source::{api_host, RegistrySource};
use ferry_registry::Target;
use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::Store;

fn main() -> ExitCode {
    let cli: Cli = ferry_cli::parse(&HELP);
    ferry_cli::run("ferry-pack", || pack(&cli))
}

fn emit_json(value: &impl serde::Serialize) {
    if let Ok(s) = serde_json::to_string(value) {
        println!("{s}");
    }
}

/// `$XDG_CACHE_HOME/ferry/pack`, else `~/.cache/ferry/pack`.
fn default_cache() -> anyhow::Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or_else(|| {
            anyhow::anyhow!("neither XDG_CACHE_HOME nor HOME is set: give --cache DIR")
        })?;
    Ok(base.join("ferry").join("pack"))
}

fn pack(cli: &Cli) -> anyhow::Result<Outcome> {
    let json = cli.output.json;
    let mut requests = Vec::new();
    for list in &cli.images {
        requests.extend(read_list(list)?);
    }
    for image in &cli.image {
        requests.push(parse_reference(image.trim(), "--image")?);
    }
    if requests.is_empty() && cli.from.is_empty() {
        anyhow::bail!("nothing to pack: give --image REF, --images FILE or --from DIR_OR_ARCHIVE");
    }
    let platforms = cli
        .platform
        .iter()
        .map(|p| p.parse::<PlatformSpec>())
        .collect::<Result<Vec<_>, _>>()?;
    let jobs = cli.jobs.jobs.unwrap_or(4) as usize;
    let options = PackOptions {
        platforms,
        referrers: cli.referrers,
        jobs,
    };
    let cache_dir = match &cli.cache {
        Some(dir) => dir.clone(),
        None => default_cache()?,
    };
    if !json {
        eprintln!("ferry-pack: cache {}", cache_dir.display());
    }
    std::fs::create_dir_all(&cache_dir)
        .map_err(|e| ferry_cli::exit::about(&cache_dir, format!("cannot create the cache: {e}")))?;
    let cache = Store::open_for_write(&cache_dir)?;

    let tty = std::io::stderr().is_terminal();
    let pulled = Arc::new(AtomicU64::new(0));
    let bar: Mutex<Option<ByteProgress>> = Mutex::new(None);
    let events = |e: PackEvent| {
        if let PackEvent::Planned { bytes, .. } = &e {
            let mut slot = bar.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(old) = slot.take() {
                old.finish();
            }
            pulled.store(0, Ordering::Relaxed);
            *slot = Some(ByteProgress::start_with_blobs(
                "pull",
                *bytes,
                pulled.clone(),
                None,
                !json,
            ));
        }
        print_event(&e, json, tty);
    };

    let compression = match cli.compress {
        Compress::Zstd => Compression::Zstd { level: 3 },
        Compress::Xz => Compression::Xz { preset: 6 },
        Compress::None => Compression::None,
    };
    let mut recorded = BTreeMap::new();
    if !cli.platform.is_empty() {
        let mut p: Vec<String> = options.platforms.iter().map(|p| p.to_string()).collect();
        p.sort();
        p.dedup();
        recorded.insert("platforms".to_owned(), p.join(","));
    }
    recorded.insert("referrers".to_owned(), cli.referrers.to_string());
    let write = WriteOptions {
        compression,
        threads: jobs.min(std::thread::available_parallelism().map_or(2, |n| n.get())),
        tool: format!("ferry-pack {}", ferry_cli::VERSION),
        options: recorded,
        checksum: cli.checksum,
    };
    let written = Arc::new(AtomicU64::new(0));
    // Registries only: the package is written while the blobs are pulled
    // (in the order it reads them), each blob as soon as it is in the cache.
    // A volume set is planned from the whole package, so it is written once the pulls are done.
    let overlapped = cli.from.is_empty() && cli.volume_size.is_none();
    let mut summary = None;
    let mut gathered = Gathered::default();
    if !requests.is_empty() {
        let hosts: BTreeSet<&str> = requests
            .iter()
            .map(|r| api_host(&r.reference.host))
            .collect();
        let targets = hosts
            .iter()
            .map(|h| {
                let plain = cli
                    .plain_http
                    .iter()
                    .any(|p| p.trim_start_matches("http://") == *h);
                Target::parse(&if plain {
                    format!("http://{h}")
                } else {
                    (*h).to_owned()
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let conns = cli.access.connect(
            targets,
            "the registry of any --image",
            WithoutCredential::Anonymous,
            move |host, msg| {
                if json {
                    emit_json(
                        &serde_json::json!({"event": "retry", "registry": host, "message": msg}),
                    );
                } else {
                    eprintln!("ferry-pack: {host}: {msg}");
                }
            },
        )?;
        let registries = RegistrySource::new(conns.into_iter().map(|c| Arc::new(c.client)))
            .with_counter(pulled.clone());
        let got = if overlapped {
            gather_registries_alongside(
                &cache,
                &registries,
                &requests,
                &options,
                &events,
                |known, arrivals| {
                    let (images, referrers) = known.pack_inputs();
                    write_package_as_pulled(
                        &cache,
                        &images,
                        &referrers,
                        &cli.out,
                        &write,
                        &|n| {
                            written.fetch_add(n, Ordering::Relaxed);
                        },
                        &|d| arrivals.wait_for(d),
                    )
                },
            )
            .map(|(g, written)| {
                summary = Some(written);
                g
            })
        } else {
            gather_registries(&cache, &registries, &requests, &options, &events)
        };
        if let Some(b) = bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish();
        }
        gathered.merge(got?);
    }
    for from in &cli.from {
        if from.is_file() {
            // An archive goes through the importer: a bar over the file's bytes.
            pulled.store(0, Ordering::Relaxed);
            let size = std::fs::metadata(from).map_or(0, |m| m.len());
            *bar.lock().unwrap_or_else(|p| p.into_inner()) = Some(ByteProgress::start_with_blobs(
                "import",
                size,
                pulled.clone(),
                None,
                !json,
            ));
        }
        let got = gather_local(&cache, from, &options, pulled.clone(), &events);
        if let Some(b) = bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish();
        }
        gathered.merge(got?);
    }

    let summary = match summary {
        Some(done) => done,
        None => {
            let (images, referrers) = gathered.pack_inputs();
            let total = package_bytes(&cache, &gathered);
            let wbar = ByteProgress::start_with_blobs("write", total, written.clone(), None, !json);
            if let Some(volume_size) = cli.volume_size {
                let stem = volume_stem(&cli.out);
                let set = write_volume_set(
                    &cache,
                    &images,
                    &referrers,
                    &stem,
                    &write,
                    &VolumeOptions {
                        volume_size,
                        parity: cli.parity,
                    },
                    &|n| {
                        written.fetch_add(n, Ordering::Relaxed);
                    },
                );
                wbar.finish();
                let set = set.map_err(|e| ferry_cli::exit::about(&cli.out, e))?;
                let checksums = if cli.checksum {
                    let files: Vec<_> = set
                        .files
                        .iter()
                        .map(|f| (f.path.clone(), f.sha256.clone()))
                        .collect();
                    let path = checksum_path(&stem);
                    write_checksum_file(&path, &files)
                        .map_err(|e| ferry_cli::exit::about(&path, e))?;
                    Some(path)
                } else {
                    None
                };
                if json {
                    let files: Vec<serde_json::Value> = set
                        .files
                        .iter()
                        .map(|f| serde_json::json!({"path": f.path, "role": f.role, "index": f.index, "bytes": f.bytes}))
                        .collect();
                    emit_json(&serde_json::json!({"event": "summary", "summary": {
                        "set_id": set.set_id.to_string(), "volume_size": volume_size, "files": files,
                        "split_entries": set.split_entries, "images": gathered.images.len(),
                        "referrers": gathered.referrers.len(), "blobs_pulled": gathered.blobs_pulled,
                        "blobs_cached": gathered.blobs_cached, "bytes_pulled": gathered.bytes_pulled,
                        "cache": cache_dir, "checksums": checksums,
                    }}));
                } else {
                    let data = set.files.iter().filter(|f| f.role == Role::Data).count();
                    println!(
                        "wrote volume set {} ({data} data + {} parity volume(s) of at most {volume_size} bytes, {} entr{} cut into parts): {} image(s), {} referrer(s); pulled {} blob(s) ({}), {} already in the cache",
                        ferry_package::volume::short(&set.set_id),
                        cli.parity,
                        set.split_entries,
                        if set.split_entries == 1 { "y" } else { "ies" },
                        gathered.images.len(),
                        gathered.referrers.len(),
                        gathered.blobs_pulled,
                        human::bytes(gathered.bytes_pulled),
                        gathered.blobs_cached
                    );
                    for f in &set.files {
                        println!("  {} ({} bytes)", f.path.display(), f.bytes);
                    }
                    if let Some(c) = &checksums {
                        println!("  {} (sha256sum -c)", c.display());
                    }
                    for f in &set.removed_stale {
                        println!(
                            "  removed {} (a volume of an earlier split of the same name)",
                            f.display()
                        );
                    }
                }
                return Ok(Outcome::Clean);
            }
            let done = write_package(&cache, &images, &referrers, &cli.out, &write, &|n| {
                written.fetch_add(n, Ordering::Relaxed);
            });
            wbar.finish();
            done
        }
    };
    let summary = summary.map_err(|e| ferry_cli::exit::about(&cli.out, e))?;
    let checksums = match &summary.sha256 {
        Some(sha256) => {
            let path = checksum_path(&summary.path);
            write_checksum_file(&path, &[(summary.path.clone(), Some(sha256.clone()))])
                .map_err(|e| ferry_cli::exit::about(&path, e))?;
            Some(path)
        }
        None => None,
    };

    let package_images: Vec<serde_json::Value> = gathered
        .images
        .iter()
        .map(|i| {
            serde_json::json!({"requested": i.requested, "name": i.name,
                "digest": i.root.digest.to_string(), "source_digest": i.source_digest.to_string(),
                "platforms": i.platforms})
        })
        .collect();
    if json {
        emit_json(&serde_json::json!({"event": "summary", "summary": {
            "package": summary.path, "sha256": summary.sha256.as_ref().map(|d| d.to_string()),
            "checksums": checksums, "bytes": summary.bytes,
            "images": package_images, "referrers": gathered.referrers.len(),
            "blobs_pulled": gathered.blobs_pulled, "blobs_cached": gathered.blobs_cached,
            "bytes_pulled": gathered.bytes_pulled, "cache": cache_dir,
        }}));
    } else {
        let sha256 = match (&summary.sha256, &checksums) {
            (Some(d), Some(c)) => format!(", sha256 {} in {}", d.hex(), c.display()),
            _ => String::new(),
        };
        println!(
            "wrote {} ({}{sha256}): {} image(s), {} referrer(s), {} manifest(s), {} blob(s); pulled {} blob(s) ({}), {} already in the cache",
            summary.path.display(),
            human::bytes(summary.bytes),
            summary.images,
            gathered.referrers.len(),
            summary.manifests,
            summary.blobs,
            gathered.blobs_pulled,
            human::bytes(gathered.bytes_pulled),
            gathered.blobs_cached
        );
    }
    Ok(Outcome::Clean)
}

/// `PACKAGE.sha256` beside `PACKAGE` (or beside a volume set's stem).
fn checksum_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256");
    path.with_file_name(name)
}

/// The stem of a volume set named by --out: its .tar.zst/.tar.xz/.tar suffix dropped.
fn volume_stem(out: &std::path::Path) -> std::path::PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".tar.zst", ".tar.xz", ".tar"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(&name)
        .to_owned();
    out.with_file_name(stem)
}

/// Bytes of every distinct node the package will hold (for the write bar).
fn package_bytes(cache: &Store, gathered: &Gathered) -> u64 {
    let mut roots: Vec<(String, ferry_store::Descriptor)> = gathered
        .images
        .iter()
        .map(|i| (i.name.clone(), i.root.clone()))
        .collect();
    roots.extend(
        gathered
            .referrers
            .iter()
            .map(|r| (r.digest.to_string(), r.clone())),
    );
    let walk =
        ferry_store::walk::walk_graph(&roots, |d| cache.read_small_blob(d, MAX_MANIFEST_BYTES));
    walk.nodes.iter().map(|n| n.descriptor.size).sum()
}

/// Prints one event: JSON lines with --json; otherwise notices on stderr and,
/// off a terminal, a line per image.
fn print_event(e: &PackEvent, json: bool, tty: bool) {
    if json {
        emit_json(e);
        return;
    }
    match e {
        PackEvent::Filtered { name, from, to, kept, of } => eprintln!(
            "ferry-pack: {name}: index {from} filtered to {} of {of} platforms ({}): packaged as {to}; pulls by tag get {to}, a pull by digest {from} will not be served by the mirror",
            kept.len(),
            kept.join(", ")
        ),
        PackEvent::PlatformMismatch { name, has } => eprintln!(
            "ferry-pack: warning: {name} is a single-platform image for {has}, not one of the --platform values; it is packed as it is"
        ),
        PackEvent::Referrers { name, artifacts, tags, via } if !tty => println!(
            "referrers of {name}: {artifacts} artifact(s) ({via}), {tags} cosign-style tag(s)"
        ),
        PackEvent::Copy(c) => match c {
            CopyEvent::ImagePushed { source, digest, .. } if !tty => {
                println!("pulled {source}@{digest}")
            }
            CopyEvent::ImageUpToDate { source, digest, .. } if !tty => {
                println!("in the cache {source}@{digest}")
            }
            CopyEvent::ReferrerSkipped { digest, reason } => {
                eprintln!("ferry-pack: warning: not packing the artifact {digest}: {reason}")
            }
            _ => {}
        },
        _ => {}
    }
}
