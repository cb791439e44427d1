//! Store audits: re-hash every blob in parallel and check the graph is closed.
//!
//! Problems are collected, never fatal, so one run reports everything.
//! Hashing runs on a pool of `jobs` threads, one blob per thread, taken in
//! one order (largest first), each read the way measured fastest for it
//! ([`crate::file_hash`]): sha256/sha512 on the hashing thread, hashed where
//! it lies in the page cache (mapped) or else read through one 1 MiB buffer;
//! `--fast` maps each blob and hashes it with blake3 on its
//! thread. A blob larger than its fair share of the work (total bytes / jobs,
//! e.g. one huge layer) gets help: a reader thread so its hashing core only
//! hashes, or for `--fast` all the pool's threads, leaf by leaf of the blake3
//! tree behind a reader of its own ([`crate::blake3_leaves`]). Every
//! other blob of 1 MiB or more is read from the disk ahead of its hasher by one
//! sequential reader, in the order the hashers take them ([`crate::prefetch`]):
//! a cold store is then read as one stream, as `cat` reads it. Resident
//! memory stays small whatever the blob size (a few 1 MiB buffers or one
//! 16 MiB mapped window per blob being hashed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::descriptor::{Descriptor, MAX_MANIFEST_BYTES};
use crate::digest::{Digest, Hasher};
use crate::error::StoreError;
use crate::file_hash::{
    blake3_file, feed_file_read_ahead, feed_file_resident_mapped, is_resident, Pace, Unpaced,
    MMAP_MIN,
};
use crate::journal;
use crate::layout::{image_name, Store, STATE_DIR};
use crate::prefetch::{feed_file_behind_reader, Prefetch, StopOnDrop, PREFETCH_BUDGET};
use crate::walk::walk_graph;

pub use crate::file_hash::feed_file;

/// Blobs smaller than this are never given a reader thread of their own.
const READ_AHEAD_MIN: u64 = 8 << 20;

/// What is wrong with one blob or manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ProblemKind {
    /// Referenced but not in the store.
    Missing,
    /// On disk with another size than its descriptor says.
    SizeMismatch {
        /// Size in the descriptor.
        expected_size: u64,
        /// Size on disk.
        actual_size: u64,
    },
    /// Content hashes to another digest.
    DigestMismatch {
        /// The digest it should have (its name).
        expected: Digest,
        /// What its bytes hash to.
        actual: Digest,
    },
    /// Could not be read.
    Unreadable {
        /// The I/O error.
        detail: String,
    },
    /// A manifest or index that does not parse, or disagrees with its descriptor.
    BadManifest {
        /// What is wrong.
        detail: String,
    },
    /// A package that cannot be read to the end (truncated or corrupt stream).
    CorruptPackage {
        /// The decoder's message.
        detail: String,
    },
    /// A package entry refused by the safety rules (traversal, links out, devices, bad names).
    UnsafeEntry {
        /// Which rule it breaks.
        detail: String,
    },
    /// A store whose `index.json` names no image: an export into it never
    /// finished (images are named last) or never ran.
    NoImages {
        /// What that means for the operator.
        detail: String,
    },
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProblemKind::Missing => write!(f, "MISSING"),
            ProblemKind::SizeMismatch {
                expected_size,
                actual_size,
            } => write!(
                f,
                "SIZE MISMATCH: expected {expected_size} bytes, found {actual_size}"
            ),
            ProblemKind::DigestMismatch { expected, actual } => write!(
                f,
                "DIGEST MISMATCH: expected {expected}, content hashes to {actual}"
            ),
            ProblemKind::Unreadable { detail } => write!(f, "UNREADABLE: {detail}"),
            ProblemKind::BadManifest { detail } => write!(f, "BAD MANIFEST: {detail}"),
            ProblemKind::CorruptPackage { detail } => write!(f, "CORRUPT PACKAGE: {detail}"),
            ProblemKind::UnsafeEntry { detail } => write!(f, "UNSAFE ENTRY: {detail}"),
            ProblemKind::NoImages { detail } => write!(f, "NO IMAGES: {detail}"),
        }
    }
}

/// One problem, with the images that are affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The blob or manifest concerned (absent for stream-level package problems).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// The package entry concerned (package audits only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// Its media type, as referenced.
    pub media_type: String,
    /// Images whose graph contains it.
    pub images: Vec<String>,
    /// What is wrong.
    #[serde(flatten)]
    pub kind: ProblemKind,
    /// Where the corrupt file was moved by `--quarantine`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined_to: Option<PathBuf>,
}

/// Findings that are not failures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditInfo {
    /// Blobs present but reachable from no image.
    pub unreferenced_blobs: Vec<Digest>,
    /// Temp, partial or foreign files left in the store.
    pub leftover_files: Vec<PathBuf>,
    /// Remarks (e.g. fast mode fell back to full hashing).
    pub notes: Vec<String>,
}

/// How to audit.
#[derive(Debug, Clone, Copy)]
pub struct AuditOptions {
    /// Check sizes and the blake3 sidecar instead of the OCI digests.
    pub fast: bool,
    /// Move corrupt blobs aside (needs the store lock).
    pub quarantine: bool,
    /// Hashing threads.
    pub jobs: usize,
}

/// Result of an audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Named images checked.
    pub images: usize,
    /// Blobs checked (manifests included).
    pub blobs: u64,
    /// Bytes hashed.
    pub bytes: u64,
    /// Blobs checked by blake3 sidecar (fast mode).
    pub fast_checked_blobs: u64,
    /// Blobs that fell back to the full digest in fast mode.
    pub fast_fallback_blobs: u64,
    /// Problems found.
    pub problems: Vec<Problem>,
    /// Non-failures worth knowing.
    pub info: AuditInfo,
    /// Wall time.
    pub seconds: f64,
}

enum Check {
    Ok { hashed: u64, fast: bool },
    Bad(ProblemKind, u64),
}

/// Audits the store at `root` (opened read-only, or for writing when quarantining).
pub fn audit_store(root: &Path, options: &AuditOptions) -> Result<AuditReport, StoreError> {
    let started = Instant::now();
    let store = if options.quarantine {
        Store::open_for_write(root)?
    } else {
        let store = Store::open_read_only(root)?;
        // A store being written is not yet what it will be: refuse (exit 2), naming the writer.
        store.check_no_writer()?;
        store
    };
    let entries = store.index_entries()?;
    let roots: Vec<(String, Descriptor)> = entries
        .iter()
        .map(|d| {
            (
                image_name(d)
                    .unwrap_or("(unnamed index.json entry)")
                    .to_owned(),
                d.clone(),
            )
        })
        .collect();

    // Graph: which descriptors each image needs (manifests read once, cached).
    let mut cache: HashMap<Digest, Result<Vec<u8>, String>> = HashMap::new();
    let mut needed: BTreeMap<Digest, (Descriptor, Vec<String>)> = BTreeMap::new();
    let mut problems: BTreeMap<Digest, Problem> = BTreeMap::new();
    for (name, root_desc) in &roots {
        // Manifests that cannot be read are checked (and named precisely) by the hashing pass.
        let mut unreadable: Vec<Descriptor> = Vec::new();
        let walk = walk_graph(
            std::slice::from_ref(&(name.clone(), root_desc.clone())),
            |d| {
                let entry = cache.entry(d.digest.clone()).or_insert_with(|| {
                    store
                        .read_small_blob(d, MAX_MANIFEST_BYTES)
                        .map_err(|e| e.to_string())
                });
                if entry.is_err() {
                    unreadable.push(d.clone());
                }
                entry.clone().map_err(|detail| StoreError::NotALayout {
                    path: d.digest.to_string().into(),
                    why: detail,
                })
            },
        );
        for d in unreadable {
            needed
                .entry(d.digest.clone())
                .or_insert_with(|| (d.clone(), Vec::new()))
                .1
                .push(name.clone());
        }
        for node in walk.nodes {
            needed
                .entry(node.descriptor.digest.clone())
                .or_insert_with(|| (node.descriptor.clone(), Vec::new()))
                .1
                .push(name.clone());
        }
        for p in walk.problems {
            if let Some((digest, kind)) = manifest_problem(&p) {
                let media_type = String::new();
                problems
                    .entry(digest.clone())
                    .or_insert_with(|| Problem {
                        digest: Some(digest),
                        entry: None,
                        media_type,
                        images: Vec::new(),
                        kind,
                        quarantined_to: None,
                    })
                    .images
                    .push(name.clone());
            }
        }
    }
    for (digest, p) in problems.iter_mut() {
        if let Some((d, _)) = needed.get(digest) {
            p.media_type = d.media_type.clone();
        }
    }

    let sidecar = if options.fast {
        Some(journal::replay(&store.journal_path())?)
    } else {
        None
    };
    let work: Vec<&Descriptor> = {
        let mut w: Vec<&Descriptor> = needed
            .values()
            .map(|(d, _)| d)
            .filter(|d| d.urls.is_empty() || store.blob_path(&d.digest).exists())
            .collect();
        w.sort_by_key(|d| std::cmp::Reverse(d.size));
        w
    };
    let jobs = options.jobs.max(1);
    // A blob bigger than its share would keep one core hashing while the others
    // sit idle: it gets a reader thread (on an idle core) of its own.
    let fair_share = work.iter().map(|d| d.size).sum::<u64>() / jobs as u64;
    // How each blob is read; every `Alone` blob of a mappable size is also read
    // ahead by one sequential reader, in the order the hashers take them
    // (`crate::prefetch`), at its offset (`base`) on the reader's line.
    let mut line: Vec<(PathBuf, u64)> = Vec::new();
    let mut line_len = 0u64;
    let plan: Vec<(Read, Option<u64>)> = work
        .iter()
        .map(|d| {
            if jobs > 1 && d.size >= READ_AHEAD_MIN && d.size > fair_share {
                return (Read::Helped, None);
            }
            if d.size < MMAP_MIN {
                return (Read::Alone, None);
            }
            let base = line_len;
            line.push((store.blob_path(&d.digest), d.size));
            line_len += d.size;
            (Read::Alone, Some(base))
        })
        .collect();
    let prefetch = Prefetch::new(jobs, PREFETCH_BUDGET);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .build()
        .map_err(|e| StoreError::io("start hashing threads", root, std::io::Error::other(e)))?;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(Digest, Check)>> = Mutex::new(Vec::with_capacity(work.len()));
    std::thread::scope(|scope| {
        if !line.is_empty() {
            scope.spawn(|| prefetch.run(&line));
        }
        // Whatever happens to the hashers, the reader is released.
        let _stop = StopOnDrop(&prefetch);
        pool.scope(|s| {
            for _ in 0..jobs {
                s.spawn(|_| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(d) = work.get(i) else { break };
                    let fast = sidecar.as_ref().and_then(|s| s.blobs.get(&d.digest));
                    let check = match plan[i] {
                        (read, Some(base)) => {
                            check_blob(&store, d, fast, read, &mut prefetch.ticket(base, d.size))
                        }
                        (read, None) => check_blob(&store, d, fast, read, &mut Unpaced),
                    };
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((d.digest.clone(), check));
                });
            }
        });
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let mut report = AuditReport {
        images: roots.len(),
        blobs: 0,
        bytes: 0,
        fast_checked_blobs: 0,
        fast_fallback_blobs: 0,
        problems: Vec::new(),
        info: AuditInfo::default(),
        seconds: 0.0,
    };
    for (digest, check) in results {
        report.blobs += 1;
        let (desc, images) = &needed[&digest];
        match check {
            Check::Ok { hashed, fast } => {
                report.bytes += hashed;
                if options.fast {
                    if fast {
                        report.fast_checked_blobs += 1;
                    } else {
                        report.fast_fallback_blobs += 1;
                    }
                }
            }
            Check::Bad(kind, hashed) => {
                report.bytes += hashed;
                problems.insert(
                    digest.clone(),
                    Problem {
                        digest: Some(digest),
                        entry: None,
                        media_type: desc.media_type.clone(),
                        images: images.clone(),
                        kind,
                        quarantined_to: None,
                    },
                );
            }
        }
    }
    if options.fast && report.fast_fallback_blobs > 0 {
        report.info.notes.push(format!(
            "--fast: {} blob(s) had no blake3 sidecar record (store not written by ferry-export?) and were checked with their full digest",
            report.fast_fallback_blobs
        ));
    }

    let referenced: HashSet<&Digest> = needed.keys().collect();
    report.info.unreferenced_blobs = list_blobs(&store)
        .into_iter()
        .filter_map(|entry| match entry {
            Ok(d) if !referenced.contains(&d) && !problems.contains_key(&d) => Some(d),
            _ => None,
        })
        .collect();
    report.info.leftover_files = leftovers(&store);

    if roots.is_empty() {
        report.problems.push(Problem {
            digest: None,
            entry: None,
            media_type: String::new(),
            images: Vec::new(),
            kind: ProblemKind::NoImages {
                detail: format!(
                    "index.json names no image: an export into this store did not finish \
                     (rerun it; {} blob(s) already here are kept) or never ran",
                    list_blobs(&store).len()
                ),
            },
            quarantined_to: None,
        });
    }
    for mut p in problems.into_values() {
        p.images.sort();
        p.images.dedup();
        if options.quarantine
            && matches!(
                p.kind,
                ProblemKind::DigestMismatch { .. } | ProblemKind::SizeMismatch { .. }
            )
        {
            if let Some(d) = &p.digest {
                p.quarantined_to = Some(quarantine(&store, d)?);
            }
        }
        report.problems.push(p);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn manifest_problem(e: &StoreError) -> Option<(Digest, ProblemKind)> {
    match e {
        StoreError::Manifest(m) => {
            let digest = match m {
                crate::descriptor::ManifestError::Malformed { digest, .. }
                | crate::descriptor::ManifestError::MediaTypeMismatch { digest, .. }
                | crate::descriptor::ManifestError::TooLarge { digest, .. } => digest.clone(),
            };
            Some((
                digest,
                ProblemKind::BadManifest {
                    detail: m.to_string(),
                },
            ))
        }
        // Unreadable manifests are re-checked (and precisely named) by the hashing pass.
        _ => None,
    }
}

/// Checks the blob `digest` of `size` bytes in `store` as `ferry-verify`
/// does: presence and size, then its blake3 against `sidecar` (the journal's
/// record) when given, else (or when they disagree) its full digest.
pub fn check_stored_blob(
    store: &Store,
    digest: &Digest,
    size: u64,
    sidecar: Option<&(u64, String)>,
) -> Result<(), ProblemKind> {
    match check_blob(
        store,
        &Descriptor::new("", digest.clone(), size),
        sidecar,
        Read::Alone,
        &mut Unpaced,
    ) {
        Check::Ok { .. } => Ok(()),
        Check::Bad(kind, _) => Err(kind),
    }
}

/// How a blob is read and hashed ([`crate::file_hash`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// On its hashing thread alone.
    Alone,
    /// With help, for a blob above its fair share: a reader thread a few
    /// buffers ahead (full digest), all the pool's threads (blake3).
    Helped,
}

/// Checks one blob: presence, size, then blake3 sidecar (fast) or its digest.
fn check_blob(
    store: &Store,
    d: &Descriptor,
    sidecar: Option<&(u64, String)>,
    read: Read,
    pace: &mut impl Pace,
) -> Check {
    let path = store.blob_path(&d.digest);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::Bad(ProblemKind::Missing, 0)
        }
        Err(e) => {
            return Check::Bad(
                ProblemKind::Unreadable {
                    detail: e.to_string(),
                },
                0,
            )
        }
    };
    let actual_size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return Check::Bad(
                ProblemKind::Unreadable {
                    detail: e.to_string(),
                },
                0,
            )
        }
    };
    if actual_size != d.size {
        return Check::Bad(
            ProblemKind::SizeMismatch {
                expected_size: d.size,
                actual_size,
            },
            0,
        );
    }
    if let Some((_, blake3_hex)) = sidecar.filter(|(size, _)| *size == d.size) {
        match blake3_file(&file, actual_size, read == Read::Helped, pace) {
            Ok(h) if h.to_hex().as_str() == blake3_hex => {
                return Check::Ok {
                    hashed: actual_size,
                    fast: true,
                }
            }
            Ok(_) => {} // sidecar disagrees: confirm with the real digest below
            Err(e) => {
                return Check::Bad(
                    ProblemKind::Unreadable {
                        detail: e.to_string(),
                    },
                    0,
                )
            }
        }
    }
    let mut h = Hasher::new(d.digest.algorithm());
    let fed = match read {
        Read::Alone => feed_file_resident_mapped(&file, actual_size, pace, |chunk| h.update(chunk)),
        // Measured: wholly in the page cache, a reader thread copying it into
        // buffers beats mapping (97% against 91% of one core's sha256 for a
        // 2 GiB blob): the copy moves to an idle core, where mapping would fault
        // pages in on the hashing one. From the disk, that copy of freshly read
        // pages cost more than the hashing core had to spare (4 GiB: 2.6 CPU-s
        // of copying, 86-89% of the bound), and one reader ahead of the hasher
        // hashing mapped windows measured better (see BENCHMARKS.md).
        Read::Helped if is_resident(&file, 0, actual_size).unwrap_or(false) => {
            feed_file_read_ahead(&file, |chunk| h.update(chunk))
        }
        Read::Helped => feed_file_behind_reader(&file, actual_size, |chunk| h.update(chunk)),
    };
    if let Err(e) = fed {
        return Check::Bad(
            ProblemKind::Unreadable {
                detail: e.to_string(),
            },
            0,
        );
    }
    let actual = h.finish();
    if actual != d.digest {
        return Check::Bad(
            ProblemKind::DigestMismatch {
                expected: d.digest.clone(),
                actual,
            },
            actual_size,
        );
    }
    Check::Ok {
        hashed: actual_size,
        fast: false,
    }
}

fn list_blobs(store: &Store) -> Vec<Result<Digest, PathBuf>> {
    let mut out = Vec::new();
    let blobs = store.root().join("blobs");
    for alg_dir in std::fs::read_dir(&blobs).into_iter().flatten().flatten() {
        let alg = alg_dir.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(alg_dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = format!("{alg}:{}", f.file_name().to_string_lossy());
            out.push(name.parse::<Digest>().map_err(|_| f.path()));
        }
    }
    out
}

fn leftovers(store: &Store) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = list_blobs(store)
        .into_iter()
        .filter_map(Result::err)
        .collect();
    let tmp = store.root().join(STATE_DIR).join("tmp");
    out.extend(
        std::fs::read_dir(tmp)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path()),
    );
    out.sort();
    out
}

/// Moves a corrupt blob out of its final path into `.ferry/quarantine/`.
fn quarantine(store: &Store, digest: &Digest) -> Result<PathBuf, StoreError> {
    let dir = store.state_dir().join("quarantine");
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let to = dir.join(format!(
        "{}-{}-{stamp}",
        digest.algorithm().name(),
        digest.hex()
    ));
    let from = store.blob_path(digest);
    std::fs::rename(&from, &to).map_err(|e| StoreError::io("quarantine", &from, e))?;
    crate::blob_writer::fsync_dir(from.parent().expect("blob dir"))?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::named_entry;

    /// A store with one image: config + two layers; returns (root, layer digests, manifest digest).
    fn store_with_image(dir: &Path) -> (Vec<Digest>, Digest) {
        store_with_layers(dir, [vec![1u8; 100_000], vec![2u8; 3_000]])
    }

    /// A store with one image of config + `layers`; returns (layer digests, manifest digest).
    fn store_with_layers(dir: &Path, layers: [Vec<u8>; 2]) -> (Vec<Digest>, Digest) {
        let store = Store::open_for_write(dir).unwrap();
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let config_d = Digest::sha256_of(&config);
        store.put_bytes(&config_d, &config, "config").unwrap();
        let mut layer_descs = Vec::new();
        for l in &layers {
            let d = Digest::sha256_of(l);
            store.put_bytes(&d, l, "layer").unwrap();
            layer_descs.push(Descriptor::new(
                crate::media::OCI_LAYER_GZIP,
                d,
                l.len() as u64,
            ));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": crate::media::OCI_MANIFEST,
            "config": Descriptor::new(crate::media::OCI_CONFIG, config_d, config.len() as u64),
            "layers": layer_descs,
        }))
        .unwrap();
        let md = Digest::sha256_of(&manifest);
        store.put_bytes(&md, &manifest, "manifest").unwrap();
        let entry = named_entry(
            Descriptor::new(
                crate::media::OCI_MANIFEST,
                md.clone(),
                manifest.len() as u64,
            ),
            "gcr.io/a/b:1",
        );
        store.write_index(&[entry]).unwrap();
        (layer_descs.into_iter().map(|d| d.digest).collect(), md)
    }

    fn opts(fast: bool) -> AuditOptions {
        AuditOptions {
            fast,
            quarantine: false,
            jobs: 2,
        }
    }

    #[test]
    fn clean_store_has_no_problems_and_fast_uses_the_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        store_with_image(dir.path());
        let r = audit_store(dir.path(), &opts(false)).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.blobs, 4);
        let f = audit_store(dir.path(), &opts(true)).unwrap();
        assert!(f.problems.is_empty());
        assert_eq!((f.fast_checked_blobs, f.fast_fallback_blobs), (4, 0));
    }

    #[test]
    fn flipped_byte_truncation_and_deletion_are_named_with_their_images() {
        let dir = tempfile::tempdir().unwrap();
        let (layers, _) = store_with_image(dir.path());
        let store = Store::open_read_only(dir.path()).unwrap();
        let p0 = store.blob_path(&layers[0]);
        let mut bytes = std::fs::read(&p0).unwrap();
        bytes[500] ^= 0xff;
        std::fs::write(&p0, &bytes).unwrap();
        for fast in [false, true] {
            let r = audit_store(dir.path(), &opts(fast)).unwrap();
            assert_eq!(r.problems.len(), 1, "fast={fast}: {:?}", r.problems);
            assert_eq!(r.problems[0].digest, Some(layers[0].clone()));
            assert_eq!(r.problems[0].images, vec!["gcr.io/a/b:1".to_string()]);
            assert!(
                matches!(&r.problems[0].kind, ProblemKind::DigestMismatch { actual, .. } if *actual == Digest::sha256_of(&bytes))
            );
        }
        std::fs::write(&p0, &bytes[..10]).unwrap();
        std::fs::remove_file(store.blob_path(&layers[1])).unwrap();
        let r = audit_store(dir.path(), &opts(false)).unwrap();
        let kinds: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.digest.clone().unwrap(), p.kind.clone()))
            .collect();
        assert!(kinds.contains(&(
            layers[0].clone(),
            ProblemKind::SizeMismatch {
                expected_size: 100_000,
                actual_size: 10
            }
        )));
        assert!(kinds.contains(&(layers[1].clone(), ProblemKind::Missing)));
    }

    /// Blobs read ahead by the sequential reader (`crate::prefetch`), from
    /// the page cache and evicted, with one to four hashers: a flipped byte,
    /// a truncated blob and a missing one are each named, and nothing hangs.
    #[test]
    fn blobs_read_ahead_are_checked_as_strictly_and_every_problem_is_named() {
        let evict =
            |path: &Path| crate::file_hash::evict_from_page_cache(&File::open(path).unwrap());
        let sizes = [3 * (MMAP_MIN as usize) + 5, 2 * (MMAP_MIN as usize) + 1];
        let pristine: [Vec<u8>; 2] = sizes.map(|n| (0..n).map(|i| (i * 7 % 251) as u8).collect());
        let dir = tempfile::tempdir().unwrap();
        let (layers, _) = store_with_layers(dir.path(), pristine.clone());
        let store = Store::open_read_only(dir.path()).unwrap();
        let paths: Vec<PathBuf> = layers.iter().map(|d| store.blob_path(d)).collect();
        let audit = |fast: bool, jobs: usize, cold: bool| {
            if cold {
                paths.iter().filter(|p| p.exists()).for_each(|p| evict(p));
            }
            let options = AuditOptions { jobs, ..opts(fast) };
            let r = audit_store(dir.path(), &options).unwrap();
            let mut found: Vec<_> = r
                .problems
                .iter()
                .map(|p| (p.digest.clone().unwrap(), p.kind.clone()))
                .collect();
            found.sort_by(|a, b| a.0.cmp(&b.0));
            found
        };
        let each = |check: &dyn Fn(Vec<(Digest, ProblemKind)>, &str)| {
            for jobs in [1, 2, 4] {
                for fast in [false, true] {
                    for cold in [false, true] {
                        check(
                            audit(fast, jobs, cold),
                            &format!("jobs {jobs}, fast {fast}, cold {cold}"),
                        );
                    }
                }
            }
        };
        each(&|found, case| assert!(found.is_empty(), "{case}: {found:?}"));
        let mut flipped = pristine[0].clone();
        flipped[sizes[0] - 2] ^= 0x10;
        std::fs::write(&paths[0], &flipped).unwrap();
        each(&|found, case| {
            assert_eq!(
                found,
                vec![(
                    layers[0].clone(),
                    ProblemKind::DigestMismatch {
                        expected: layers[0].clone(),
                        actual: Digest::sha256_of(&flipped)
                    }
                )],
                "{case}"
            )
        });
        std::fs::write(&paths[1], &pristine[1][..MMAP_MIN as usize]).unwrap();
        each(&|found, case| {
            assert!(
                found.contains(&(
                    layers[1].clone(),
                    ProblemKind::SizeMismatch {
                        expected_size: sizes[1] as u64,
                        actual_size: MMAP_MIN
                    }
                )),
                "{case}: {found:?}"
            );
            assert_eq!(found.len(), 2, "{case}: {found:?}");
        });
        std::fs::remove_file(&paths[0]).unwrap();
        each(&|found, case| {
            assert!(
                found.contains(&(layers[0].clone(), ProblemKind::Missing)),
                "{case}: {found:?}"
            );
            assert_eq!(found.len(), 2, "{case}: {found:?}");
        });
    }

    /// One layer above [`READ_AHEAD_MIN`] and far above its fair share: the full
    /// check reads it on a reader thread (from the page cache) or hashes it
    /// mapped behind a reader of its own (from the disk), and `--fast` hashes
    /// its blake3 leaves on both threads. (Blobs hashed alone are covered by the
    /// tests above and by `file_hash`'s.) Each must still see a flipped byte
    /// anywhere, a truncation and a deletion.
    #[test]
    fn a_huge_blob_is_checked_as_strictly_on_the_overlapped_and_parallel_paths() {
        // Over two blake3 leaves (`--fast` hashes it leaf by leaf on every thread).
        let big = (READ_AHEAD_MIN.max(2 * crate::blake3_leaves::LEAF) + 3 * 65_536 + 17) as usize;
        let pristine: Vec<u8> = (0..big).map(|i| (i * 13 % 241) as u8).collect();
        for at in [0, big / 2, big - 1] {
            let dir = tempfile::tempdir().unwrap();
            let (layers, _) = store_with_layers(dir.path(), [pristine.clone(), vec![2u8; 3_000]]);
            let r = audit_store(dir.path(), &opts(true)).unwrap();
            assert!(r.problems.is_empty(), "{:?}", r.problems);
            assert_eq!(r.fast_checked_blobs, 4);
            let store = Store::open_read_only(dir.path()).unwrap();
            let path = store.blob_path(&layers[0]);
            let mut bytes = pristine.clone();
            bytes[at] ^= 0x40;
            std::fs::write(&path, &bytes).unwrap();
            // From the page cache and from the disk (each read differently).
            for (fast, cold) in [(false, false), (true, false), (false, true), (true, true)] {
                if cold {
                    crate::file_hash::evict_from_page_cache(&File::open(&path).unwrap());
                }
                let r = audit_store(dir.path(), &opts(fast)).unwrap();
                assert_eq!(
                    r.problems.len(),
                    1,
                    "at {at}, fast={fast}, cold={cold}: {:?}",
                    r.problems
                );
                assert!(
                    matches!(&r.problems[0].kind, ProblemKind::DigestMismatch { expected, actual }
                        if *expected == layers[0] && *actual == Digest::sha256_of(&bytes)),
                    "at {at}, fast={fast}: {:?}",
                    r.problems
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let (layers, _) = store_with_layers(dir.path(), [pristine.clone(), vec![2u8; 3_000]]);
        let store = Store::open_read_only(dir.path()).unwrap();
        let path = store.blob_path(&layers[0]);
        std::fs::write(&path, &pristine[..big - 1]).unwrap();
        for fast in [false, true] {
            let r = audit_store(dir.path(), &opts(fast)).unwrap();
            assert_eq!(
                r.problems
                    .iter()
                    .map(|p| p.kind.clone())
                    .collect::<Vec<_>>(),
                vec![ProblemKind::SizeMismatch {
                    expected_size: big as u64,
                    actual_size: big as u64 - 1
                }],
                "fast={fast}"
            );
        }
        std::fs::remove_file(&path).unwrap();
        for fast in [false, true] {
            let r = audit_store(dir.path(), &opts(fast)).unwrap();
            assert_eq!(
                r.problems
                    .iter()
                    .map(|p| (p.digest.clone(), p.kind.clone()))
                    .collect::<Vec<_>>(),
                vec![(Some(layers[0].clone()), ProblemKind::Missing)],
                "fast={fast}"
            );
        }
    }

    #[test]
    fn store_without_images_is_a_finding_and_a_locked_store_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _) = store_with_image(dir.path());
        // What an interrupted export leaves: blobs, but nothing named yet.
        Store::open_for_write(dir.path())
            .unwrap()
            .write_index(&[])
            .unwrap();
        let r = audit_store(dir.path(), &opts(false)).unwrap();
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            matches!(&r.problems[0].kind, ProblemKind::NoImages { detail } if detail.contains("4 blob(s)")),
            "{:?}",
            r.problems
        );

        let writer = Store::open_for_write(dir.path()).unwrap();
        match audit_store(dir.path(), &opts(true)).unwrap_err() {
            StoreError::Locked { holder, .. } => {
                assert!(holder.contains(&std::process::id().to_string()), "{holder}")
            }
            other => panic!("unexpected {other}"),
        }
        drop(writer);
        assert_eq!(
            audit_store(dir.path(), &opts(false))
                .unwrap()
                .problems
                .len(),
            1
        );
    }

    #[test]
    fn missing_manifest_and_leftovers_and_quarantine() {
        let dir = tempfile::tempdir().unwrap();
        let (layers, manifest) = store_with_image(dir.path());
        let store = Store::open_read_only(dir.path()).unwrap();
        std::fs::write(store.state_dir().join("tmp/blob-1-1"), b"partial").unwrap();
        let stray = Digest::sha256_of(b"stray");
        std::fs::write(store.blob_path(&stray), b"stray").unwrap();
        let r = audit_store(dir.path(), &opts(false)).unwrap();
        assert!(r.problems.is_empty());
        assert_eq!(r.info.unreferenced_blobs, vec![stray]);
        assert_eq!(r.info.leftover_files.len(), 1);

        // Corrupt a layer and quarantine it: it leaves its final path.
        std::fs::write(store.blob_path(&layers[1]), vec![9u8; 3_000]).unwrap();
        let q = audit_store(
            dir.path(),
            &AuditOptions {
                fast: false,
                quarantine: true,
                jobs: 1,
            },
        )
        .unwrap();
        assert_eq!(q.problems.len(), 1);
        let moved = q.problems[0].quarantined_to.clone().unwrap();
        assert!(moved.exists() && !store.blob_path(&layers[1]).exists());

        std::fs::remove_file(store.blob_path(&manifest)).unwrap();
        let r = audit_store(dir.path(), &opts(false)).unwrap();
        assert_eq!(r.problems.len(), 1);
        assert_eq!(
            (r.problems[0].digest.clone(), r.problems[0].kind.clone()),
            (Some(manifest), ProblemKind::Missing)
        );
        assert_eq!(r.problems[0].media_type, crate::media::OCI_MANIFEST);
    }
}
