//! `ferry-fixture`: generate a seeded, deterministic OCI image package for tests.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use ferry_testkit::{
    generate_layout, parse_size, write_package, FixtureSpec, PackageFormat, PackageOptions,
};

/// Generate a deterministic package of realistic OCI images (test fixtures only).
///
/// Prints a JSON summary on stdout:
/// {"images":[{"reference","digest","media_type","size"}],"blobs":N,"bytes":N,"package_bytes":N}
#[derive(Parser)]
#[command(
    name = "ferry-fixture",
    version,
    after_help = "Example: a 1 GiB package of incompressible layers (8 x 128 MiB), multi-block xz,\n\
    layers before index.json (about 15 s on 2 cores):\n  \
    ferry-fixture --out /tmp/big.tar.xz --format tar.xz-mt --images 4 --layers 2 \\\n    \
    --layer-size 128MiB --incompressible --no-shared-base --layers-first\n\
    A small mixed package (OCI, multi-arch index, Docker schema 2):\n  \
    ferry-fixture --out /tmp/small.tar --format tar --multi-arch-every 2 --docker-every 3\n\n\
    Formats: dir, tar, tar.gz, tar.xz, tar.xz-mt, tar.zst, docker-archive"
)]
struct Args {
    /// Package file to write (a directory for --format dir).
    #[arg(long)]
    out: PathBuf,
    /// Package format: dir, tar, tar.gz, tar.xz, tar.xz-mt, tar.zst, docker-archive.
    #[arg(long, default_value = "tar")]
    format: PackageFormat,
    /// Seed of all generated content; same seed and flags give identical bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of named images.
    #[arg(long, default_value_t = 3)]
    images: usize,
    /// Layers per image manifest (at least 1).
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Approximate size of each layer blob: 64KiB, 1MiB, 1GiB or bytes.
    #[arg(long, default_value = "64KiB", value_parser = parse_size)]
    layer_size: u64,
    /// Random (incompressible) layer file contents instead of text.
    #[arg(long)]
    incompressible: bool,
    /// Every Nth image is an amd64+arm64 index (0 = never).
    #[arg(long, default_value_t = 0)]
    multi_arch_every: usize,
    /// Every Nth image uses Docker schema 2 media types (0 = never).
    #[arg(long, default_value_t = 0)]
    docker_every: usize,
    /// Every Nth (OCI) image uses tar+zstd layers (0 = never).
    #[arg(long, default_value_t = 0)]
    zstd_every: usize,
    /// Give every layer its own content (by default all images share a base layer).
    #[arg(long)]
    no_shared_base: bool,
    /// Put layer blobs before oci-layout/index.json/manifests in the tar.
    #[arg(long)]
    layers_first: bool,
    /// xz level for tar.xz and tar.xz-mt: a preset 0-9, or "stored" (LZMA2 uncompressed
    /// chunks, what xz produces for random data, ~100x faster). Default: stored with
    /// --incompressible, else 1.
    #[arg(long, value_parser = parse_xz_level)]
    xz_level: Option<XzLevel>,
    /// Repository prefix of every reference.
    #[arg(long, default_value = "gcr.io/anthos-baremetal-release")]
    name_prefix: String,
    /// Tag of every reference.
    #[arg(long, default_value = "1.8.0")]
    tag: String,
}

#[derive(Clone, Copy)]
enum XzLevel {
    Preset(u32),
    Stored,
}

fn parse_xz_level(s: &str) -> Result<XzLevel, String> {
    match s {
        "stored" => Ok(XzLevel::Stored),
        _ => match s.parse::<u32>() {
            Ok(n) if n <= 9 => Ok(XzLevel::Preset(n)),
            _ => Err(format!(
                "invalid xz level {s:?}: expected 0-9 or \"stored\""
            )),
        },
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let spec = FixtureSpec {
        seed: args.seed,
        images: args.images,
        layers_per_image: args.layers,
        layer_size: args.layer_size,
        incompressible: args.incompressible,
        multi_arch_every: args.multi_arch_every,
        docker_schema2_every: args.docker_every,
        zstd_layers_every: args.zstd_every,
        shared_base_layer: !args.no_shared_base,
        name_prefix: args.name_prefix,
        tag: args.tag,
    };
    let xz_level = args.xz_level.unwrap_or(if args.incompressible {
        XzLevel::Stored
    } else {
        XzLevel::Preset(1)
    });
    let (xz_preset, xz_stored) = match xz_level {
        XzLevel::Preset(n) => (n, false),
        XzLevel::Stored => (1, true),
    };
    let opts = PackageOptions {
        layers_first: args.layers_first,
        xz_preset,
        xz_stored,
        ..PackageOptions::default()
    };
    let (fixture, package_bytes) = if args.format == PackageFormat::Dir {
        let fixture = generate_layout(&spec, &args.out)?;
        (fixture, None)
    } else {
        let parent = match args.out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let scratch = tempfile::Builder::new()
            .prefix(".ferry-fixture-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating a scratch layout in {}", parent.display()))?;
        let fixture = generate_layout(&spec, scratch.path())?;
        write_package(scratch.path(), args.format, &opts, &args.out)?;
        (fixture, Some(std::fs::metadata(&args.out)?.len()))
    };
    let images: Vec<_> = fixture
        .images
        .iter()
        .map(|i| {
            serde_json::json!({
                "reference": i.reference,
                "digest": i.descriptor.digest,
                "media_type": i.descriptor.media_type,
                "size": i.descriptor.size,
            })
        })
        .collect();
    let summary = serde_json::json!({
        "images": images,
        "blobs": fixture.unique_blobs().len(),
        "bytes": fixture.total_blob_bytes(),
        "format": args.format.name(),
        "package": args.out,
        "package_bytes": package_bytes,
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}
