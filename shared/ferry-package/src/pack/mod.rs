//! The canonical package writer (`ferry-pack`'s output): a plain OCI image
//! layout in a tar, compressed with seekable zstd, multi-block xz or not at all.
//!
//! Invariants:
//! 1. Metadata first: `oci-layout`, `index.json`, [`manifest::PACKAGE_MANIFEST`],
//!    then every manifest and index (each image's children first), then
//!    configs and layers in image order. Each blob appears once.
//! 2. Byte-reproducible: images sorted by name, referrers by digest; every
//!    header has mode 0644, owner 0:0, no user or group name and time 0;
//!    compression parameters are fixed and independent of the thread count;
//!    nothing depends on the clock, host, umask or order of pulls.
//! 3. Every byte copied from the cache store is checked against its digest
//!    on the way (a corrupt cache blob is removed from the cache and named).
//! 4. The package appears at its final path only when complete and durable
//!    (written under a temporary name in the same directory, fsynced, renamed,
//!    directory fsynced); on any error nothing is left at the final path.
//! 5. Memory does not grow with blob sizes (blobs stream in 1 MiB reads; at
//!    most a few compression frames are in flight).

pub mod frames;
pub mod manifest;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ferry_copy::plan::{plan, Destination};
use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::layout::named_entry;
use ferry_store::verify_reader::VerifyingReader;
use ferry_store::{media, Descriptor, Digest, Store};

pub use frames::Compression;
use frames::{framed_output, FramedOutput};

pub mod disk;
use manifest::{
    CreatedBy, EntryKind, EntryRecord, PackageManifest, PackedImageRecord, Pinned, ReferrerRecord,
    PACKAGE_MANIFEST, SCHEMA,
};

/// The `oci-layout` file every package starts with.
pub const OCI_LAYOUT_BYTES: &[u8] = b"{\"imageLayoutVersion\":\"1.0.0\"}\n";
/// Tar block size.
pub const BLOCK: u64 = 512;

/// One named image to package.
#[derive(Debug, Clone)]
pub struct PackImage {
    /// Full reference written into `index.json` (both name annotations).
    pub name: String,
    /// Its manifest or index, as held in the cache store.
    pub root: Descriptor,
    /// What the user asked for, verbatim.
    pub requested: String,
    /// Digest at the source (differs from `root.digest` only when an index was
    /// filtered to some platforms).
    pub source_digest: Digest,
    /// Platforms kept; empty: the index was kept whole.
    pub platforms: Vec<String>,
}

/// An artifact with a `subject`, held in the cache: an unnamed `index.json` entry.
#[derive(Debug, Clone)]
pub struct PackReferrer {
    /// Its manifest.
    pub root: Descriptor,
}

/// How to write.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    /// Compression.
    pub compression: Compression,
    /// Compression threads (does not change the bytes).
    pub threads: usize,
    /// Tool name and version recorded in the package manifest.
    pub tool: String,
    /// Other options that change what is packed (platforms, referrers), recorded as given.
    pub options: BTreeMap<String, String>,
    /// Hash the whole file as it is written (sha256, for `sha256sum -c`):
    /// costs a core-second per 1.7 GB, so off unless asked for.
    pub checksum: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct PackSummary {
    /// The package.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its sha256 (with [`WriteOptions::checksum`]).
    pub sha256: Option<Digest>,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// Named images.
    pub images: usize,
    /// Manifests and indexes.
    pub manifests: usize,
    /// Configs and layers.
    pub blobs: usize,
    /// Compression frames (zstd) or blocks (xz).
    pub frames: u64,
    /// The package manifest written.
    pub manifest: PackageManifest,
}

/// Why no package was written.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The cache does not hold what an image needs.
    #[error("{image}: {problem}")]
    Incomplete {
        /// The image.
        image: String,
        /// What is missing.
        problem: String,
    },
    /// A cache blob does not have its digest (it was removed from the cache).
    #[error("cache blob {digest} is corrupt ({problem}); it was removed from the cache: run again to fetch it anew")]
    CorruptCache {
        /// The blob.
        digest: Digest,
        /// Expected vs actual.
        problem: String,
    },
    /// Two images with one name.
    #[error("image {0} is listed twice with different digests")]
    DuplicateName(String),
    /// Writing failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ferry_store::StoreError),
}

/// Whether a blob the writer waited for is in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Pulled in this run: its bytes were hashed as they arrived and it was
    /// renamed into the cache only when they matched; copied without hashing
    /// them again (its size is still checked).
    Verified,
    /// In the cache from an earlier run: hashed again as it is copied.
    InCache,
    /// Will not come (the pull failed): no package is written.
    Never,
}

/// One tar entry of the package, before its bytes are read.
struct Planned {
    path: String,
    kind: EntryKind,
    desc: Descriptor,
}

/// Everything a package holds, in tar order, before any blob is read: the
/// same for a single package and a volume set.
#[derive(Debug, Clone)]
pub struct PackagePlan {
    /// `index.json` bytes.
    pub index_json: Vec<u8>,
    /// The package manifest (offsets as in a single package).
    pub manifest: PackageManifest,
    /// Its exact bytes.
    pub manifest_bytes: Vec<u8>,
    /// The images, sorted by name.
    pub images: Vec<PackImage>,
}

impl PackagePlan {
    /// The leading entries every package (and volume) starts with: name and bytes.
    pub fn metadata_entries(&self) -> [(&'static str, &[u8]); 3] {
        [
            ("oci-layout", OCI_LAYOUT_BYTES),
            ("index.json", &self.index_json[..]),
            (PACKAGE_MANIFEST, &self.manifest_bytes[..]),
        ]
    }
}

/// Plans the package of `images` (and `referrers`) held in `cache`: checks
/// the cache holds every manifest and blob, fixes the order and the offsets.
pub fn plan_package(
    cache: &Store,
    images: &[PackImage],
    referrers: &[PackReferrer],
    options: &WriteOptions,
) -> Result<PackagePlan, PackError> {
    plan_package_of(cache, images, referrers, options, true)
}

/// [`plan_package`]; `require_blobs` false: only the manifests must be in the
/// cache yet (configs and layers are still being pulled).
fn plan_package_of(
    cache: &Store,
    images: &[PackImage],
    referrers: &[PackReferrer],
    options: &WriteOptions,
    require_blobs: bool,
) -> Result<PackagePlan, PackError> {
    let mut images: Vec<PackImage> = images.to_vec();
    images.sort_by(|a, b| a.name.cmp(&b.name).then(a.root.digest.cmp(&b.root.digest)));
    images.dedup_by(|b, a| a.name == b.name && a.root.digest == b.root.digest);
    if let Some(w) = images.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(PackError::DuplicateName(w[0].name.clone()));
    }
    let mut referrers: Vec<PackReferrer> = referrers.to_vec();
    referrers.sort_by(|a, b| a.root.digest.cmp(&b.root.digest));
    referrers.dedup_by(|b, a| a.root.digest == b.root.digest);

    let index_entries: Vec<Descriptor> = images
        .iter()
        .map(|i| named_entry(bare(&i.root), &i.name))
        .chain(referrers.iter().map(|r| bare(&r.root)))
        .collect();
    let index_json = index_bytes(&index_entries);

    let graph = plan(
        &index_entries,
        |name| {
            Ok(Destination {
                repository: String::new(),
                tag: None,
                display: name.to_owned(),
            })
        },
        |d| cache.read_small_blob(d, MAX_MANIFEST_BYTES),
    )
    .map_err(|e| match e {
        ferry_copy::plan::PlanError::Graph { name, problem } => PackError::Incomplete {
            image: name,
            problem: problem.to_string(),
        },
        other => PackError::Incomplete {
            image: String::new(),
            problem: other.to_string(),
        },
    })?;
    if let Some(u) = graph.unattached.first() {
        return Err(PackError::Incomplete {
            image: format!("referrer {}", u.digest),
            problem: u.reason.clone(),
        });
    }

    let mut seen: HashSet<Digest> = HashSet::new();
    let mut manifests = Vec::new();
    let mut blobs = Vec::new();
    for image in &graph.images {
        for m in &image.manifests {
            if seen.insert(m.digest.clone()) {
                manifests.push(planned(EntryKind::Manifest, m));
            }
        }
    }
    for image in &graph.images {
        for b in &image.blobs {
            if seen.insert(b.digest.clone()) {
                if require_blobs && !cache.has_blob(&b.digest, b.size) {
                    return Err(PackError::Incomplete {
                        image: image.source.clone(),
                        problem: format!(
                            "blob {} ({} bytes) is not in the cache",
                            b.digest, b.size
                        ),
                    });
                }
                blobs.push(planned(EntryKind::Blob, b));
            }
        }
    }
    let body: Vec<Planned> = manifests.into_iter().chain(blobs).collect();

    let mut created = BTreeMap::new();
    for (k, v) in options.compression.describe() {
        created.insert(k.to_owned(), v);
    }
    created.extend(options.options.clone());
    let mut manifest = PackageManifest {
        schema: SCHEMA.to_owned(),
        created_by: CreatedBy {
            tool: options.tool.clone(),
            options: created,
        },
        index_json: Pinned {
            digest: Digest::sha256_of(&index_json),
            size: index_json.len() as u64,
        },
        images: images
            .iter()
            .map(|i| PackedImageRecord {
                name: i.name.clone(),
                requested: i.requested.clone(),
                digest: i.root.digest.clone(),
                media_type: i.root.media_type.clone(),
                source_digest: i.source_digest.clone(),
                platforms: i.platforms.clone(),
            })
            .collect(),
        referrers: referrers
            .iter()
            .map(|r| ReferrerRecord {
                digest: r.root.digest.clone(),
                media_type: r.root.media_type.clone(),
            })
            .collect(),
        entries: Vec::new(),
        extra: BTreeMap::new(),
    };
    let manifest_bytes = place_entries(&mut manifest, &body, index_json.len() as u64);

    Ok(PackagePlan {
        index_json,
        manifest,
        manifest_bytes,
        images,
    })
}

/// Writes the package of `images` (and `referrers`) from `cache` to `out`.
pub fn write_package(
    cache: &Store,
    images: &[PackImage],
    referrers: &[PackReferrer],
    out: &Path,
    options: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<PackSummary, PackError> {
    let plan = plan_package(cache, images, referrers, options)?;
    write_planned(cache, plan, out, options, progress, &|_| Arrival::InCache)
}

/// [`write_package`] while the blobs are still arriving in `cache` (pulled on
/// other threads, in package order): every manifest must be there, and before
/// each config or layer is copied, `arrived` waits for it ([`Arrival`]). The
/// bytes are the same as [`write_package`]'s.
pub fn write_package_as_pulled(
    cache: &Store,
    images: &[PackImage],
    referrers: &[PackReferrer],
    out: &Path,
    options: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
    arrived: &(dyn Fn(&Descriptor) -> Arrival + Sync),
) -> Result<PackSummary, PackError> {
    let plan = plan_package_of(cache, images, referrers, options, false)?;
    write_planned(cache, plan, out, options, progress, arrived)
}

fn write_planned(
    cache: &Store,
    plan: PackagePlan,
    out: &Path,
    options: &WriteOptions,
    progress: &(dyn Fn(u64) + Sync),
    arrived: &(dyn Fn(&Descriptor) -> Arrival + Sync),
) -> Result<PackSummary, PackError> {
    let tmp = temp_path(out);
    let io_err = |source: io::Error| PackError::Io {
        path: tmp.clone(),
        source,
    };
    let result = (|| {
        let (writer, on_disk) = disk::create(&tmp).map_err(io_err)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = options.threads.clamp(1, cores);
        let mut output = framed_output(
            options.compression,
            Box::new(writer),
            threads,
            options.checksum,
        )
        .map_err(io_err)?;
        let mut tar_bytes = 0u64;
        for (path, data) in plan.metadata_entries() {
            tar_bytes += write_small(&mut output, path, data).map_err(io_err)?;
        }
        let mut buf = vec![0u8; 1 << 20];
        for entry in &plan.manifest.entries {
            let desc = entry.descriptor();
            let n = match entry.kind {
                EntryKind::Manifest => {
                    let bytes = cache.read_small_blob(&desc, MAX_MANIFEST_BYTES)?;
                    check_bytes(cache, &desc, &bytes)?;
                    write_small(&mut output, &entry.path, &bytes).map_err(io_err)?
                }
                EntryKind::Blob => {
                    let arrival = arrived(&desc);
                    if arrival == Arrival::Never {
                        return Err(PackError::Incomplete {
                            image: entry.path.clone(),
                            problem: format!(
                                "blob {} ({} bytes) did not arrive in the cache",
                                desc.digest, desc.size
                            ),
                        });
                    }
                    let verify = arrival == Arrival::InCache;
                    copy_blob(
                        cache,
                        &desc,
                        &entry.path,
                        &mut output,
                        &mut buf,
                        progress,
                        verify,
                    )?
                }
            };
            tar_bytes += n;
        }
        output.boundary().map_err(io_err)?;
        output.write(&[0u8; 2 * BLOCK as usize]).map_err(io_err)?;
        tar_bytes += 2 * BLOCK;
        let framed = output.finish().map_err(io_err)?;
        // Most of it is on disk already (see `disk`): this waits for the rest.
        on_disk.finish().map_err(io_err)?;
        Ok((framed, tar_bytes))
    })();
    let (framed, tar_bytes) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out).map_err(|source| PackError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    ferry_store::blob_writer::fsync_dir(dir)?;
    Ok(PackSummary {
        path: out.to_path_buf(),
        bytes: framed.bytes,
        sha256: framed.sha256,
        tar_bytes,
        images: plan.images.len(),
        manifests: plan
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Manifest)
            .count(),
        blobs: plan
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Blob)
            .count(),
        frames: framed.frames,
        manifest: plan.manifest,
    })
}

/// Writes `path` in the format `sha256sum -c` reads (`HEX  NAME`, names
/// relative to `path`'s directory), atomically and durably (temp name, fsync,
/// rename, fsync of the directory). Files without a digest are hashed here.
pub fn write_checksum_file(path: &Path, files: &[(PathBuf, Option<Digest>)]) -> io::Result<()> {
    let mut text = String::new();
    for (file, digest) in files {
        let digest = match digest {
            Some(d) => d.clone(),
            None => ferry_store::file_hash::digest_file(file, ferry_store::Algorithm::Sha256)?,
        };
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        text.push_str(&format!("{}  {name}\n", digest.hex()));
    }
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// The temporary name a package is written under (beside it, hidden; a rerun
/// replaces a leftover one).
pub fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "package".into());
    out.with_file_name(format!(".{name}.ferry-partial"))
}

/// A descriptor without annotations a source index carried (names are set anew).
fn bare(d: &Descriptor) -> Descriptor {
    Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size)
}

fn planned(kind: EntryKind, d: &Descriptor) -> Planned {
    Planned {
        path: blob_path(&d.digest),
        kind,
        desc: d.clone(),
    }
}

/// `blobs/<alg>/<hex>`.
pub fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

fn index_bytes(entries: &[Descriptor]) -> Vec<u8> {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": entries,
    });
    let mut v = serde_json::to_vec(&index).expect("an index serialises");
    v.push(b'\n');
    v
}

/// Bytes an entry of `size` takes in the tar (header, data, padding).
pub fn tar_span(size: u64) -> u64 {
    BLOCK + size.div_ceil(BLOCK) * BLOCK
}

/// Fills `manifest.entries` with the offsets of `body` and returns the
/// manifest's bytes: the offsets depend on the manifest's own size, so this
/// repeats until the size in blocks no longer changes.
fn place_entries(manifest: &mut PackageManifest, body: &[Planned], index_len: u64) -> Vec<u8> {
    let mut manifest_len = 0u64;
    loop {
        let mut offset =
            tar_span(OCI_LAYOUT_BYTES.len() as u64) + tar_span(index_len) + tar_span(manifest_len);
        manifest.entries = body
            .iter()
            .map(|e| {
                let record = EntryRecord {
                    path: e.path.clone(),
                    kind: e.kind,
                    digest: e.desc.digest.clone(),
                    size: e.desc.size,
                    media_type: e.desc.media_type.clone(),
                    offset: offset + BLOCK,
                };
                offset += tar_span(e.desc.size);
                record
            })
            .collect();
        let bytes = manifest.to_bytes();
        if tar_span(bytes.len() as u64) == tar_span(manifest_len) {
            return bytes;
        }
        manifest_len = bytes.len() as u64;
    }
}

/// A ustar header with every field fixed but the path and size.
pub fn canonical_header(path: &str, size: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

/// Layers stored compressed (gzip, zstd): recompressing them gains nothing.
pub fn already_compressed(media_type: &str) -> bool {
    media_type.ends_with("+gzip")
        || media_type.ends_with("+zstd")
        || media_type.ends_with(".tar.gzip")
        || media_type.ends_with(".tar.zstd")
}

/// Zero bytes after an entry of `size` up to the next block.
pub fn padding(size: u64) -> usize {
    ((BLOCK - size % BLOCK) % BLOCK) as usize
}

/// Writes one entry held in memory; returns the tar bytes it took.
pub fn write_small(o: &mut Box<dyn FramedOutput>, path: &str, data: &[u8]) -> io::Result<u64> {
    o.boundary()?;
    o.write(canonical_header(path, data.len() as u64)?.as_bytes())?;
    o.write(data)?;
    o.write(&[0u8; BLOCK as usize][..padding(data.len() as u64)])?;
    Ok(tar_span(data.len() as u64))
}

/// Checks a manifest read from the cache (a corrupt one is removed from the cache).
pub fn check_bytes(cache: &Store, d: &Descriptor, bytes: &[u8]) -> Result<(), PackError> {
    let actual = d.digest.of_same_algorithm(bytes);
    if actual != d.digest {
        let _ = std::fs::remove_file(cache.blob_path(&d.digest));
        return Err(PackError::CorruptCache {
            digest: d.digest.clone(),
            problem: format!("its bytes hash to {actual}"),
        });
    }
    Ok(())
}

/// Streams one cache blob into the package, checking its size and (with
/// `verify`) its digest on the way.
pub fn copy_blob(
    cache: &Store,
    d: &Descriptor,
    path: &str,
    o: &mut Box<dyn FramedOutput>,
    buf: &mut [u8],
    progress: &(dyn Fn(u64) + Sync),
    verify: bool,
) -> Result<u64, PackError> {
    let file_path = cache.blob_path(&d.digest);
    let io_err = |source: io::Error| PackError::Io {
        path: file_path.clone(),
        source,
    };
    let file = File::open(&file_path).map_err(io_err)?;
    if already_compressed(&d.media_type) {
        o.boundary_stored().map_err(io_err)?;
    } else {
        o.boundary().map_err(io_err)?;
    }
    o.write(canonical_header(path, d.size).map_err(io_err)?.as_bytes())
        .map_err(io_err)?;
    // Hashed again unless it was verified as it arrived in this run; the
    // size is always checked (a short or long file is never packed).
    let mut verifying = verify.then(|| VerifyingReader::new(&file, &d.digest, Some(d.size)));
    let mut plain = &file;
    let reader: &mut dyn Read = match verifying.as_mut() {
        Some(v) => v,
        None => &mut plain,
    };
    let mut left = d.size;
    while left > 0 {
        let want = (left.min(buf.len() as u64)) as usize;
        let n = reader.read(&mut buf[..want]).map_err(io_err)?;
        if n == 0 {
            break;
        }
        o.write(&buf[..n]).map_err(io_err)?;
        left -= n as u64;
        progress(n as u64);
    }
    // Anything past the recorded size also makes the check fail.
    let mut extra = [0u8; 1];
    let past_end = reader.read(&mut extra).map_err(io_err)?;
    let outcome = match verifying {
        Some(v) => v.finish().map(|_| ()).map_err(|m| m.to_string()),
        None if left > 0 || past_end > 0 => Err(format!(
            "expected {} bytes, the cache file holds {}",
            d.size,
            if left > 0 {
                format!("{}", d.size - left)
            } else {
                "more".to_owned()
            }
        )),
        None => Ok(()),
    };
    if let Err(problem) = outcome {
        let _ = std::fs::remove_file(&file_path);
        return Err(PackError::CorruptCache {
            digest: d.digest.clone(),
            problem,
        });
    }
    o.write(&[0u8; BLOCK as usize][..padding(d.size)])
        .map_err(io_err)?;
    Ok(tar_span(d.size))
}
