//! Packing a layout into a package file: plain or compressed tar of the OCI
//! layout, a legacy `docker save` archive, or a directory copy. Everything is
//! streamed from the layout's files; output is byte-identical for the same layout.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context as _};
use ferry_store::descriptor::{ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use ferry_store::media::{self, Kind};
use ferry_store::{Descriptor, Digest};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Serialize;

use crate::layout::{blob_path, classify, read_children, read_index};
use crate::tario::{dir_header, file_header};
use crate::xzstore::StoredXzWriter;

/// Package file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackageFormat {
    /// A copy of the layout directory (`dir`).
    Dir,
    /// Plain tar of the layout (`tar`).
    Tar,
    /// gzip tar (`tar.gz`).
    TarGz,
    /// Single-block xz tar (`tar.xz`).
    TarXz,
    /// Multi-block xz tar from the multithreaded encoder (`tar.xz-mt`); file name ends `.tar.xz`.
    TarXzMultiBlock,
    /// zstd tar with frame checksum (`tar.zst`).
    TarZst,
    /// Legacy `docker save` tar: `manifest.json`, `repositories`, `<hex>.json`, `<diffid>.tar`.
    DockerArchive,
}

impl PackageFormat {
    /// Every format, in `Display` spelling order.
    pub const ALL: [PackageFormat; 7] = [
        PackageFormat::Dir,
        PackageFormat::Tar,
        PackageFormat::TarGz,
        PackageFormat::TarXz,
        PackageFormat::TarXzMultiBlock,
        PackageFormat::TarZst,
        PackageFormat::DockerArchive,
    ];

    /// The name used by `FromStr`/`Display` and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            PackageFormat::Dir => "dir",
            PackageFormat::Tar => "tar",
            PackageFormat::TarGz => "tar.gz",
            PackageFormat::TarXz => "tar.xz",
            PackageFormat::TarXzMultiBlock => "tar.xz-mt",
            PackageFormat::TarZst => "tar.zst",
            PackageFormat::DockerArchive => "docker-archive",
        }
    }

    /// Conventional file-name suffix (empty for `dir`).
    pub fn extension(self) -> &'static str {
        match self {
            PackageFormat::Dir => "",
            PackageFormat::Tar | PackageFormat::DockerArchive => ".tar",
            PackageFormat::TarGz => ".tar.gz",
            PackageFormat::TarXz | PackageFormat::TarXzMultiBlock => ".tar.xz",
            PackageFormat::TarZst => ".tar.zst",
        }
    }
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PackageFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<PackageFormat, String> {
        PackageFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = PackageFormat::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown package format {s:?} (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// How to pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageOptions {
    /// false (default): `oci-layout`, `index.json`, manifests and configs come before
    /// layer blobs in the tar; true: layer blobs first, `index.json` last (the hard
    /// case for streaming importers). For docker-archive: `manifest.json` first or last.
    pub layers_first: bool,
    /// xz preset for `tar.xz` and `tar.xz-mt` (default 1: fast, fine for test data).
    pub xz_preset: u32,
    /// Instead of running liblzma, store the tar in LZMA2 uncompressed chunks: what
    /// xz emits for incompressible data anyway, but ~100x faster (xz compresses random
    /// data at ~6 MB/s per core). Still a standard `.xz` (CRC32 check); `tar.xz-mt`
    /// keeps `xz_block_size` blocks with sizes in their headers. Default false.
    pub xz_stored: bool,
    /// Uncompressed block size of `tar.xz-mt` (default 8 MiB, so big packages have many blocks).
    pub xz_block_size: u64,
    /// Worker threads for `tar.xz-mt` and `tar.zst` (default 2).
    pub threads: u32,
}

impl Default for PackageOptions {
    fn default() -> PackageOptions {
        PackageOptions {
            layers_first: false,
            xz_preset: 1,
            xz_stored: false,
            xz_block_size: 8 << 20,
            threads: 2,
        }
    }
}

/// Packs the layout at `layout_dir` into `out` (a file; a directory for `Dir`).
/// The file is written as `<out>.partial` and renamed when complete.
pub fn write_package(
    layout_dir: &Path,
    format: PackageFormat,
    opts: &PackageOptions,
    out: &Path,
) -> anyhow::Result<()> {
    if format == PackageFormat::Dir {
        return copy_layout(layout_dir, out);
    }
    let mut partial = out.as_os_str().to_owned();
    partial.push(".partial");
    let partial = Path::new(&partial);
    let file = File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
    let w = BufWriter::with_capacity(1 << 20, file);
    let w = match format {
        PackageFormat::Dir => unreachable_dir()?,
        PackageFormat::Tar => write_oci_tar(layout_dir, opts, w)?,
        PackageFormat::DockerArchive => write_docker_archive(layout_dir, opts, w)?,
        PackageFormat::TarGz => {
            write_oci_tar(layout_dir, opts, GzEncoder::new(w, Compression::fast()))?.finish()?
        }
        PackageFormat::TarXz if opts.xz_stored => {
            write_oci_tar(layout_dir, opts, StoredXzWriter::new(w, None)?)?.finish()?
        }
        PackageFormat::TarXzMultiBlock if opts.xz_stored => {
            let xz = StoredXzWriter::new(w, Some(opts.xz_block_size))?;
            write_oci_tar(layout_dir, opts, xz)?.finish()?
        }
        PackageFormat::TarXz => write_oci_tar(
            layout_dir,
            opts,
            liblzma::write::XzEncoder::new(w, opts.xz_preset),
        )?
        .finish()?,
        PackageFormat::TarXzMultiBlock => {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(opts.threads.max(1))
                .block_size(opts.xz_block_size)
                .preset(opts.xz_preset)
                .check(liblzma::stream::Check::Crc64)
                .encoder()
                .context("creating multithreaded xz encoder")?;
            write_oci_tar(
                layout_dir,
                opts,
                liblzma::write::XzEncoder::new_stream(w, stream),
            )?
            .finish()?
        }
        PackageFormat::TarZst => {
            let mut enc = zstd::stream::write::Encoder::new(w, 3)?;
            enc.include_checksum(true)?;
            enc.multithread(opts.threads.max(1))?;
            write_oci_tar(layout_dir, opts, enc)?.finish()?
        }
    };
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    drop(file);
    fs::rename(partial, out)
        .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))?;
    Ok(())
}

fn unreachable_dir<T>() -> anyhow::Result<T> {
    bail!("dir packages are copied, not written as a stream")
}

fn copy_layout(layout_dir: &Path, out: &Path) -> anyhow::Result<()> {
    if out.exists() && fs::canonicalize(out)? == fs::canonicalize(layout_dir)? {
        return Ok(());
    }
    fs::create_dir_all(out.join("blobs").join("sha256"))?;
    for name in ["oci-layout", "index.json"] {
        fs::copy(layout_dir.join(name), out.join(name))?;
    }
    for d in crate::layout::list_blobs(layout_dir)? {
        fs::copy(blob_path(layout_dir, &d), blob_path(out, &d))?;
    }
    Ok(())
}

fn append_file<W: Write>(tar: &mut tar::Builder<W>, name: &str, path: &Path) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let size = file.metadata()?.len();
    let mut header = file_header(size, 0o644);
    tar.append_data(&mut header, name, BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("adding {name}"))?;
    Ok(())
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let mut header = file_header(bytes.len() as u64, 0o644);
    tar.append_data(&mut header, name, bytes)?;
    Ok(())
}

fn write_oci_tar<W: Write>(dir: &Path, opts: &PackageOptions, w: W) -> anyhow::Result<W> {
    let blobs = classify(dir)?;
    let mut tar = tar::Builder::new(w);
    let heads = |tar: &mut tar::Builder<W>| -> anyhow::Result<()> {
        append_file(tar, "oci-layout", &dir.join("oci-layout"))?;
        append_file(tar, "index.json", &dir.join("index.json"))
    };
    let add_blobs = |tar: &mut tar::Builder<W>, list: &[Digest]| -> anyhow::Result<()> {
        for d in list {
            append_file(
                tar,
                &format!("blobs/sha256/{}", d.hex()),
                &blob_path(dir, d),
            )?;
        }
        Ok(())
    };
    if !opts.layers_first {
        heads(&mut tar)?;
    }
    tar.append_data(&mut dir_header(), "blobs/", io::empty())?;
    tar.append_data(&mut dir_header(), "blobs/sha256/", io::empty())?;
    if opts.layers_first {
        add_blobs(&mut tar, &blobs.layers)?;
        add_blobs(&mut tar, &blobs.metadata)?;
        heads(&mut tar)?;
    } else {
        add_blobs(&mut tar, &blobs.metadata)?;
        add_blobs(&mut tar, &blobs.layers)?;
    }
    Ok(tar.into_inner()?)
}

/// One element of a docker-archive `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DockerArchiveEntry {
    /// Config file name (`<hex>.json`).
    #[serde(rename = "Config")]
    pub config: String,
    /// Full references.
    #[serde(rename = "RepoTags")]
    pub repo_tags: Vec<String>,
    /// Uncompressed layer file names (`<diff_id hex>.tar`), base first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

fn decompressed(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    use std::io::BufRead as _;
    let mut file = BufReader::with_capacity(1 << 20, File::open(path)?);
    let kind = media::sniff_oci_layer_type(file.fill_buf()?);
    Ok(match kind {
        media::OCI_LAYER_GZIP => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        media::OCI_LAYER_ZSTD => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        _ => Box::new(file),
    })
}

/// A layer as docker save writes it: uncompressed, named by its diff_id.
struct ArchiveLayer {
    name: String,
    blob: Digest,
    size: u64,
}

fn write_docker_archive<W: Write>(dir: &Path, opts: &PackageOptions, w: W) -> anyhow::Result<W> {
    let mut entries = Vec::new();
    let mut configs: Vec<(String, Digest)> = Vec::new();
    let mut layers: Vec<ArchiveLayer> = Vec::new();
    let mut repositories: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, String>,
    > = Default::default();
    for top in read_index(dir)? {
        let reference = top
            .annotations
            .get(ANNOTATION_CONTAINERD_NAME)
            .or_else(|| top.annotations.get(ANNOTATION_REF_NAME))
            .cloned();
        let manifest = amd64_manifest(dir, &top)?;
        let children = read_children(dir, &manifest)?;
        let (config, image_layers) = children.split_first().context("manifest without config")?;
        let config_bytes = fs::read(blob_path(dir, &config.digest))?;
        let config_json: serde_json::Value = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("config {} is not JSON", config.digest))?;
        let diff_ids = config_json["rootfs"]["diff_ids"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let config_name = format!("{}.json", config.digest.hex());
        if !configs.iter().any(|(n, _)| *n == config_name) {
            configs.push((config_name.clone(), config.digest.clone()));
        }
        let mut names = Vec::new();
        for (k, layer) in image_layers.iter().enumerate() {
            let diff_id: Digest = diff_ids
                .get(k)
                .and_then(|v| v.as_str())
                .with_context(|| format!("config {} lacks diff_id {k}", config.digest))?
                .parse()?;
            let name = format!("{}.tar", diff_id.hex());
            if !layers.iter().any(|l| l.name == name) {
                let size = io::copy(
                    &mut decompressed(&blob_path(dir, &layer.digest))?,
                    &mut io::sink(),
                )
                .with_context(|| format!("decompressing layer {}", layer.digest))?;
                layers.push(ArchiveLayer {
                    name: name.clone(),
                    blob: layer.digest.clone(),
                    size,
                });
            }
            names.push(name);
        }
        if let Some(reference) = &reference {
            if let Some((repo, tag)) = split_reference(reference) {
                let top_layer = names
                    .last()
                    .map(|n| n.trim_end_matches(".tar").to_owned())
                    .unwrap_or_default();
                repositories
                    .entry(repo.to_owned())
                    .or_default()
                    .insert(tag.to_owned(), top_layer);
            }
        }
        entries.push(DockerArchiveEntry {
            config: config_name,
            repo_tags: reference.into_iter().collect(),
            layers: names,
        });
    }
    let manifest_json = serde_json::to_vec(&entries)?;
    let repositories_json = serde_json::to_vec(&repositories)?;
    let mut tar = tar::Builder::new(w);
    let heads = |tar: &mut tar::Builder<W>| -> anyhow::Result<()> {
        append_bytes(tar, "manifest.json", &manifest_json)?;
        append_bytes(tar, "repositories", &repositories_json)
    };
    let bodies = |tar: &mut tar::Builder<W>, layers_first: bool| -> anyhow::Result<()> {
        let add_configs = |tar: &mut tar::Builder<W>| -> anyhow::Result<()> {
            for (name, digest) in &configs {
                append_file(tar, name, &blob_path(dir, digest))?;
            }
            Ok(())
        };
        if !layers_first {
            add_configs(tar)?;
        }
        for l in &layers {
            let mut header = file_header(l.size, 0o644);
            let reader = decompressed(&blob_path(dir, &l.blob))?;
            tar.append_data(&mut header, &l.name, reader)
                .with_context(|| format!("adding {}", l.name))?;
        }
        if layers_first {
            add_configs(tar)?;
        }
        Ok(())
    };
    if opts.layers_first {
        bodies(&mut tar, true)?;
        heads(&mut tar)?;
    } else {
        heads(&mut tar)?;
        bodies(&mut tar, false)?;
    }
    Ok(tar.into_inner()?)
}

/// `repo:tag` split at the last colon after the last slash.
fn split_reference(reference: &str) -> Option<(&str, &str)> {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    let colon = reference[slash..].rfind(':')? + slash;
    Some((&reference[..colon], &reference[colon + 1..]))
}

/// The image manifest docker save would export: the entry itself, or an index's amd64 child.
fn amd64_manifest(dir: &Path, top: &Descriptor) -> anyhow::Result<Descriptor> {
    match media::kind_of(&top.media_type) {
        Kind::Manifest => Ok(top.clone()),
        Kind::Index => {
            let children = read_children(dir, top)?;
            children
                .iter()
                .find(|c| {
                    c.platform
                        .as_ref()
                        .is_some_and(|p| p.architecture == "amd64")
                })
                .or(children.first())
                .map(|c| amd64_manifest(dir, c))
                .context("empty index")?
        }
        Kind::Blob => bail!("{} is not a manifest ({})", top.digest, top.media_type),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::process::Command;

    use super::*;
    use crate::image::{generate_layout, FixtureSpec};

    fn layout(spec: &FixtureSpec) -> (tempfile::TempDir, crate::image::Fixture) {
        let dir = tempfile::tempdir().unwrap();
        let f = generate_layout(spec, &dir.path().join("layout")).unwrap();
        (dir, f)
    }

    fn tar_names<R: Read>(r: R) -> Vec<String> {
        let mut a = tar::Archive::new(r);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn open(path: &Path, format: PackageFormat) -> Box<dyn Read> {
        let f = BufReader::new(File::open(path).unwrap());
        match format {
            PackageFormat::TarGz => Box::new(flate2::read::GzDecoder::new(f)),
            PackageFormat::TarXz | PackageFormat::TarXzMultiBlock => {
                Box::new(liblzma::read::XzDecoder::new_multi_decoder(f))
            }
            PackageFormat::TarZst => Box::new(zstd::stream::read::Decoder::new(f).unwrap()),
            _ => Box::new(f),
        }
    }

    #[test]
    fn formats_round_trip_and_are_deterministic() {
        let spec = FixtureSpec {
            multi_arch_every: 2,
            docker_schema2_every: 3,
            ..FixtureSpec::default()
        };
        let (dir, fixture) = layout(&spec);
        let src = dir.path().join("layout");
        for format in PackageFormat::ALL {
            if format == PackageFormat::Dir || format == PackageFormat::DockerArchive {
                continue;
            }
            for (layers_first, xz_stored) in [(false, false), (true, false), (false, true)] {
                let xz = matches!(
                    format,
                    PackageFormat::TarXz | PackageFormat::TarXzMultiBlock
                );
                if xz_stored && !xz {
                    continue;
                }
                let opts = PackageOptions {
                    layers_first,
                    xz_stored,
                    xz_block_size: 100_000,
                    ..PackageOptions::default()
                };
                let a = dir.path().join(format!("a{}", format.extension()));
                let b = dir.path().join(format!("b{}", format.extension()));
                write_package(&src, format, &opts, &a).unwrap();
                write_package(&src, format, &opts, &b).unwrap();
                assert_eq!(
                    fs::read(&a).unwrap(),
                    fs::read(&b).unwrap(),
                    "{format} not deterministic"
                );
                let names = tar_names(open(&a, format));
                let pos = |n: &str| names.iter().position(|x| x == n).unwrap();
                assert_eq!(names.len(), 4 + fixture.unique_blobs().len(), "{format}");
                let top = format!("blobs/sha256/{}", fixture.images[0].blobs[2].digest.hex());
                if layers_first {
                    assert!(pos(&top) < pos("index.json"));
                } else {
                    assert_eq!(&names[..2], ["oci-layout", "index.json"]);
                    assert_eq!(&names[2..4], ["blobs/", "blobs/sha256/"]);
                }
                // Unpack and verify as a layout.
                let out = dir
                    .path()
                    .join(format!("unpacked-{format}-{layers_first}-{xz_stored}"));
                tar::Archive::new(open(&a, format)).unpack(&out).unwrap();
                crate::layout::verify_layout(&out).unwrap();
            }
        }
        let copy = dir.path().join("copy");
        write_package(&src, PackageFormat::Dir, &PackageOptions::default(), &copy).unwrap();
        crate::layout::verify_layout(&copy).unwrap();
    }

    #[test]
    fn multi_block_xz_has_several_blocks() {
        let spec = FixtureSpec {
            images: 1,
            layers_per_image: 1,
            layer_size: 300 * 1024,
            incompressible: true,
            ..FixtureSpec::default()
        };
        let (dir, _) = layout(&spec);
        let out = dir.path().join("p.tar.xz");
        let opts = PackageOptions {
            xz_block_size: 64 * 1024,
            ..PackageOptions::default()
        };
        write_package(
            &dir.path().join("layout"),
            PackageFormat::TarXzMultiBlock,
            &opts,
            &out,
        )
        .unwrap();
        let listing = xz(&["--robot", "-lvv"], &out);
        let text = String::from_utf8_lossy(&listing.stdout);
        let blocks = text.lines().filter(|l| l.starts_with("block\t")).count();
        assert!(blocks > 1, "{text}");
        assert_eq!(blocks as u64, xz_block_count(&fs::read(&out).unwrap()));
        let stored = dir.path().join("stored.tar.xz");
        let stored_opts = PackageOptions {
            xz_stored: true,
            ..opts.clone()
        };
        write_package(
            &dir.path().join("layout"),
            PackageFormat::TarXzMultiBlock,
            &stored_opts,
            &stored,
        )
        .unwrap();
        assert!(xz_block_count(&fs::read(&stored).unwrap()) > 1);
        xz(&["-t"], &stored);
        let single = dir.path().join("s.tar.xz");
        write_package(
            &dir.path().join("layout"),
            PackageFormat::TarXz,
            &opts,
            &single,
        )
        .unwrap();
        assert_eq!(xz_block_count(&fs::read(&single).unwrap()), 1);
        assert!(xz_block_count(&fs::read(&out).unwrap()) > 1);
    }

    /// Runs the `xz` CLI (required: scripts/install-deps.sh installs xz-utils) on `file` and
    /// checks that it succeeds.
    fn xz(args: &[&str], file: &Path) -> std::process::Output {
        let out = match Command::new("xz").args(args).arg(file).output() {
            Ok(out) => out,
            Err(e) => panic!(
                "cannot run `xz` ({e}): it is required to check .xz packages; install xz-utils \
                 (scripts/install-deps.sh)"
            ),
        };
        assert!(
            out.status.success(),
            "xz {args:?} {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Number of records in the index of a single-stream .xz file.
    fn xz_block_count(bytes: &[u8]) -> u64 {
        let footer = &bytes[bytes.len() - 12..];
        let backward = (u64::from(u32::from_le_bytes(footer[4..8].try_into().unwrap())) + 1) * 4;
        let index_start = bytes.len() - 12 - backward as usize;
        assert_eq!(bytes[index_start], 0, "index indicator");
        // Number of records: a multibyte integer after the indicator.
        let mut n = 0u64;
        for (i, b) in bytes[index_start + 1..].iter().enumerate() {
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
        }
        n
    }

    #[test]
    fn docker_archive_lists_files_that_exist() {
        let spec = FixtureSpec {
            multi_arch_every: 2,
            docker_schema2_every: 3,
            zstd_layers_every: 1,
            ..FixtureSpec::default()
        };
        let (dir, fixture) = layout(&spec);
        let out = dir.path().join("d.tar");
        write_package(
            &dir.path().join("layout"),
            PackageFormat::DockerArchive,
            &PackageOptions::default(),
            &out,
        )
        .unwrap();
        let mut archive = tar::Archive::new(File::open(&out).unwrap());
        let mut files = std::collections::BTreeMap::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            files.insert(name, data);
        }
        let manifest: Vec<DockerArchiveEntry> =
            serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(manifest.len(), fixture.images.len());
        let mut listed = BTreeSet::new();
        for (entry, img) in manifest.iter().zip(&fixture.images) {
            assert_eq!(entry.repo_tags, std::slice::from_ref(&img.reference));
            let config: serde_json::Value = serde_json::from_slice(&files[&entry.config]).unwrap();
            assert_eq!(config["architecture"], "amd64");
            assert_eq!(
                Digest::sha256_of(&files[&entry.config]).hex(),
                entry.config.trim_end_matches(".json")
            );
            for (k, layer) in entry.layers.iter().enumerate() {
                let data = &files[layer];
                // Uncompressed tar named by (and hashing to) its diff_id.
                assert_eq!(
                    format!("sha256:{}", layer.trim_end_matches(".tar")),
                    config["rootfs"]["diff_ids"][k]
                );
                assert_eq!(
                    Digest::sha256_of(data).hex(),
                    layer.trim_end_matches(".tar")
                );
                listed.insert(layer.clone());
            }
            listed.insert(entry.config.clone());
        }
        let repositories: serde_json::Value =
            serde_json::from_slice(&files["repositories"]).unwrap();
        assert!(repositories["gcr.io/anthos-baremetal-release/img-0"]["1.8.0"].is_string());
        listed.insert("manifest.json".into());
        listed.insert("repositories".into());
        assert_eq!(listed, files.keys().cloned().collect::<BTreeSet<_>>());
    }

    #[test]
    fn format_names_round_trip() {
        for f in PackageFormat::ALL {
            assert_eq!(f.to_string().parse::<PackageFormat>().unwrap(), f);
        }
        assert!("tar.bz2".parse::<PackageFormat>().is_err());
    }
}
