//! Package audits: verify every digest of a package in one streaming pass,
//! extracting nothing to disk. Problems are collected, not fatal.
//!
//! The package is read and decompressed on a thread of its own, a few MiB
//! ahead of the tar walk ([`for_each_entry_read_ahead`]), and entries of 1 MiB
//! or more are hashed on one worker per core ([`HashPool`], at most 32 MiB in
//! flight) while the walk goes on to the next: sha256 cannot be split within
//! an entry, so this is how a package of many layers uses every core.

use std::collections::{BTreeMap, HashMap};
use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use ferry_store::audit::{AuditInfo, AuditReport, Problem, ProblemKind};
use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::hash_pool::HashPool;
use ferry_store::layout::IndexJson;
use ferry_store::walk::walk_in_memory;
use ferry_store::{media, Algorithm, Descriptor, Digest, Hasher, StoreError};

use crate::collect::{EntryFailure, MAX_METADATA_BYTES, METADATA_FILES};
use crate::detect::{detect, PackageFormat};
use crate::entries::{for_each_entry_read_ahead, EntryHandler};
use crate::error::PackageError;
use crate::nested::{image_archive, read_head, walk_image_archive, MAX_NESTING};
use crate::pack::manifest::{PackageManifest, PACKAGE_MANIFEST};

const CHUNK: usize = 1 << 20;

#[derive(Default)]
struct Auditor {
    /// Blobs seen (by digest, as named), with their real size, if their content matched.
    blobs: HashMap<Digest, u64>,
    /// Small JSON blobs kept to walk the graph (manifests, indexes, configs).
    json: HashMap<Digest, Vec<u8>>,
    metadata: HashMap<String, Vec<u8>>,
    problems: Vec<Problem>,
    bytes: u64,
    count: u64,
    buf: Vec<u8>,
    /// Image archives inside the package, audited on their own: (entry, auditor).
    nested: Vec<(String, Auditor)>,
    /// 0 for the package, 1 inside one of its image archives.
    depth: u32,
    /// `ferry-package.json`, when the package has one (packages ferry-pack wrote).
    package_manifest: Option<Vec<u8>>,
    /// Data offset of the entry being read (from the tar walk).
    next_offset: u64,
    /// Every file entry after the package manifest: path, data offset, size.
    seen_after_manifest: Vec<(String, u64, u64)>,
    /// Workers hashing large entries while the walk goes on (the top-level
    /// package on a machine with cores to spare); `None`: hashed inline.
    hashers: Option<HashPool>,
    /// Entries handed to `hashers`: (stream id, path, digest named, size).
    pending: Vec<(u64, String, Option<Digest>, u64)>,
}

/// Chunks of large entries in flight to the hashing workers, at most.
const HASHING_BUDGET: usize = 32 << 20;
/// Entries at least this large go to the hashing workers.
const PARALLEL_MIN: u64 = 1 << 20;

/// Hashing workers for a package audit: one per core, when there are two or more.
fn hashers() -> Option<HashPool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores > 1).then(|| HashPool::new(cores, HASHING_BUDGET))
}

fn problem(entry: Option<&str>, digest: Option<Digest>, kind: ProblemKind) -> Problem {
    Problem {
        digest,
        entry: entry.map(str::to_owned),
        media_type: String::new(),
        images: Vec::new(),
        kind,
        quarantined_to: None,
    }
}

impl Auditor {
    /// A stream that could not be read to its end (truncated, corrupt, an
    /// entry twice) is a problem of the package; any other error stops the audit.
    fn stream_ended(&mut self, walked: Result<(), PackageError>) -> Result<(), PackageError> {
        self.collect_hashes();
        match walked {
            Err(e @ (PackageError::Corrupt { .. } | PackageError::DuplicateEntry { .. })) => {
                self.problems.push(problem(
                    None,
                    None,
                    ProblemKind::CorruptPackage {
                        detail: e.to_string(),
                    },
                ));
                Ok(())
            }
            other => other,
        }
    }

    /// Audits the image archive in entry `path` on its own; a corrupt or
    /// truncated one is a problem of the package naming the entry.
    fn nested_archive(
        &mut self,
        path: &str,
        compression: crate::detect::Compression,
        reader: &mut dyn Read,
    ) -> Result<(), EntryFailure> {
        if self.depth >= MAX_NESTING {
            self.problems.push(problem(
                Some(path),
                None,
                ProblemKind::UnsafeEntry {
                    detail:
                        "an image archive inside an image archive (one level of nesting at most)"
                            .into(),
                },
            ));
            return Ok(());
        }
        let mut inner = Auditor {
            depth: self.depth + 1,
            buf: std::mem::take(&mut self.buf),
            ..Auditor::default()
        };
        match walk_image_archive(path, compression, reader, &mut inner) {
            Ok(()) => {}
            Err(e @ (PackageError::Corrupt { .. } | PackageError::DuplicateEntry { .. })) => {
                inner.problems.push(problem(
                    None,
                    None,
                    ProblemKind::CorruptPackage {
                        detail: e.to_string(),
                    },
                ));
            }
            Err(e) => {
                return Err(PackageError::Nested {
                    entry: path.to_owned(),
                    inner: Box::new(e),
                }
                .into())
            }
        }
        self.buf = std::mem::take(&mut inner.buf);
        self.bytes += inner.bytes;
        self.count += inner.count;
        self.nested.push((path.to_owned(), inner));
        Ok(())
    }

    /// Waits for the entries being hashed by the workers and records them as
    /// [`Self::hash_entry`] does inline.
    fn collect_hashes(&mut self) {
        let Some(pool) = self.hashers.take() else {
            return;
        };
        let digests = pool.finish();
        for (id, path, expected, size) in std::mem::take(&mut self.pending) {
            if let Some(actual) = digests.get(&id) {
                self.record(&path, expected, size, actual.clone(), Vec::new());
            }
        }
    }

    /// The outcome of hashing an entry: a `blobs/` entry against its name.
    fn record(
        &mut self,
        path: &str,
        expected: Option<Digest>,
        size: u64,
        actual: Digest,
        kept: Vec<u8>,
    ) {
        if let Some(expected) = expected {
            if actual != expected {
                self.problems.push(problem(
                    Some(path),
                    Some(expected.clone()),
                    ProblemKind::DigestMismatch { expected, actual },
                ));
            } else {
                if kept.first() == Some(&b'{') {
                    self.json.insert(expected.clone(), kept);
                }
                self.blobs.insert(expected, size);
            }
        }
    }

    /// Hashes a file entry, checking a `blobs/` entry against its name.
    fn hash_entry(
        &mut self,
        path: &str,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<(), EntryFailure> {
        let named = path
            .strip_prefix("blobs/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(alg, hex)| {
                Algorithm::from_name(alg)
                    .ok_or(())
                    .and_then(|a| Digest::new(a, hex).map_err(|_| ()))
            });
        let expected = match named {
            Some(Ok(d)) => Some(d),
            Some(Err(())) => {
                self.problems.push(problem(
                    Some(path),
                    None,
                    ProblemKind::UnsafeEntry {
                        detail: "blob name is not a valid sha256/sha512 digest".into(),
                    },
                ));
                None
            }
            None => None, // other files (docker-archive payloads): hashed for the byte count only
        };
        let algorithm = expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let keep = size <= MAX_MANIFEST_BYTES && expected.is_some();
        if let Some(pool) = self
            .hashers
            .as_mut()
            .filter(|_| size >= PARALLEL_MIN && !keep)
        {
            let id = pool.feed(algorithm, reader, size, |_| {}).map_err(|e| {
                EntryFailure::Input(format!("reading entry {path:?} ({size} bytes): {e}"))
            })?;
            self.pending.push((id, path.to_owned(), expected, size));
            self.bytes += size;
            self.count += 1;
            return Ok(());
        }
        let mut hasher = Hasher::new(algorithm);
        let mut kept = Vec::new();
        if self.buf.is_empty() {
            self.buf = vec![0; CHUNK];
        }
        let mut left = size;
        while left > 0 {
            let want = left.min(CHUNK as u64) as usize;
            let n = reader
                .read(&mut self.buf[..want])
                .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
            if n == 0 {
                return Err(EntryFailure::Input(format!(
                    "entry {path:?} is truncated: header says {size} bytes, only {} present",
                    size - left
                )));
            }
            hasher.update(&self.buf[..n]);
            if keep && (kept.len() + n) as u64 <= MAX_MANIFEST_BYTES {
                kept.extend_from_slice(&self.buf[..n]);
            }
            left -= n as u64;
        }
        self.bytes += size;
        self.count += 1;
        let actual = hasher.finish();
        self.record(path, expected, size, actual, kept);
        Ok(())
    }
}

impl EntryHandler for Auditor {
    fn data_offset(&mut self, offset: u64) {
        self.next_offset = offset;
    }

    fn file(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), EntryFailure> {
        if self.depth == 0 && self.package_manifest.is_some() {
            self.seen_after_manifest
                .push((path.to_owned(), self.next_offset, size));
        }
        if self.depth == 0 && path == PACKAGE_MANIFEST && size <= MAX_METADATA_BYTES {
            let mut bytes = Vec::new();
            reader
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
            self.package_manifest = Some(bytes);
            return Ok(());
        }
        if METADATA_FILES.contains(&path) && size <= MAX_METADATA_BYTES {
            let mut bytes = Vec::new();
            reader
                .take(size)
                .read_to_end(&mut bytes)
                .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
            self.metadata.insert(path.to_owned(), bytes);
            return Ok(());
        }
        if path.starts_with("blobs/") {
            return self.hash_entry(path, size, reader);
        }
        let head = read_head(path, size, reader)?;
        let archive = image_archive(&head);
        let rest = size - head.len() as u64;
        let mut whole = Cursor::new(head).chain(reader.take(rest));
        match archive {
            Some(compression) => self.nested_archive(path, compression, &mut whole),
            None => self.hash_entry(path, size, &mut whole),
        }
    }

    fn link(&mut self, _path: String, _target: String) -> Result<(), PackageError> {
        Ok(())
    }

    fn refused(&mut self, error: PackageError) -> Result<(), PackageError> {
        let entry = match &error {
            PackageError::UnsafeEntry { entry, .. } | PackageError::BadBlobName { entry, .. } => {
                Some(entry.clone())
            }
            _ => None,
        };
        self.problems.push(problem(
            entry.as_deref(),
            None,
            ProblemKind::UnsafeEntry {
                detail: error.to_string(),
            },
        ));
        Ok(())
    }
}

/// Verifies the package at `path` without extracting it: every blob's digest
/// against its name, then the image graphs of `index.json` (every descriptor
/// present with the right size, manifests parse, media types agree).
///
/// Fails only when the package cannot be read at all (exit 2); corruption,
/// including a truncated or corrupt stream, is reported as problems.
pub fn audit_package(
    path: &Path,
    threads: u32,
    progress: Arc<AtomicU64>,
) -> Result<AuditReport, PackageError> {
    let started = Instant::now();
    let format = detect(path)?;
    let compression = match format {
        PackageFormat::Archive(c) => c,
        PackageFormat::LayoutDir => {
            return Err(PackageError::NotAPackage {
                path: path.into(),
                why: "a directory is audited as a store".into(),
            })
        }
    };
    let mut a = Auditor {
        hashers: hashers(),
        ..Auditor::default()
    };
    let walked = for_each_entry_read_ahead(path, compression, threads, progress, &mut a);
    a.stream_ended(walked)?;
    let mut report = empty_report(a.count, a.bytes);
    let nested = std::mem::take(&mut a.nested);
    let own = a.metadata.contains_key("index.json")
        || a.metadata.contains_key("manifest.json")
        || nested.is_empty();
    if let Some(bytes) = a.package_manifest.take() {
        check_package_manifest(&bytes, &mut a, &mut report);
    }
    if own {
        check_graphs(a, &mut report);
    } else {
        report.problems = a.problems;
    }
    for (entry, inner) in nested {
        let mut part = empty_report(0, 0);
        check_graphs(inner, &mut part);
        report.images += part.images;
        for note in part.info.notes {
            if !report.info.notes.contains(&note) {
                report.info.notes.push(note);
            }
        }
        report
            .problems
            .extend(part.problems.into_iter().map(|mut p| {
                p.entry = Some(match p.entry {
                    Some(inner_entry) => format!("{entry}: {inner_entry}"),
                    None => entry.clone(),
                });
                p
            }));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Checks `ferry-package.json` against what the package holds: `index.json`
/// by digest, the images it names, and every later entry in order, at its
/// recorded offset, with its recorded size and digest (the digest itself was
/// checked against the bytes by [`Auditor::hash_entry`]).
fn check_package_manifest(bytes: &[u8], a: &mut Auditor, report: &mut AuditReport) {
    let bad = |detail: String, digest: Option<Digest>| {
        problem(
            Some(PACKAGE_MANIFEST),
            digest,
            ProblemKind::BadManifest { detail },
        )
    };
    let m = match PackageManifest::parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            a.problems.push(bad(e, None));
            return;
        }
    };
    match a.metadata.get("index.json") {
        Some(index) if Digest::sha256_of(index) == m.index_json.digest => {
            if let Ok(index) = serde_json::from_slice::<IndexJson>(index) {
                let named: Vec<(&str, &Digest)> = index
                    .manifests
                    .iter()
                    .filter_map(|d| ferry_store::layout::image_name(d).map(|n| (n, &d.digest)))
                    .collect();
                let listed: Vec<(&str, &Digest)> = m
                    .images
                    .iter()
                    .map(|i| (i.name.as_str(), &i.digest))
                    .collect();
                if named != listed {
                    a.problems.push(bad(
                        "its images differ from the images named in index.json".into(),
                        None,
                    ));
                }
            }
        }
        Some(index) => a.problems.push(bad(
            format!(
                "index.json hashes to {}, the package manifest pins {}",
                Digest::sha256_of(index),
                m.index_json.digest
            ),
            Some(m.index_json.digest.clone()),
        )),
        None => {} // reported by the graph check
    }
    let seen = std::mem::take(&mut a.seen_after_manifest);
    let mut seen = seen.iter();
    let mut absent = Vec::new();
    for rec in &m.entries {
        let Some((path, offset, size)) = seen.next() else {
            absent.push(rec);
            continue;
        };
        let expected_path = crate::pack::blob_path(&rec.digest);
        let mut wrong = Vec::new();
        if *path != rec.path || rec.path != expected_path {
            wrong.push(format!("entry {path:?} where {:?} is listed", rec.path));
        }
        if *offset != rec.offset {
            wrong.push(format!("at offset {offset}, listed at {}", rec.offset));
        }
        if *size != rec.size {
            wrong.push(format!("{size} bytes, listed as {}", rec.size));
        }
        if !wrong.is_empty() {
            a.problems.push(problem(
                Some(path),
                Some(rec.digest.clone()),
                ProblemKind::BadManifest {
                    detail: format!("does not match {PACKAGE_MANIFEST}: {}", wrong.join("; ")),
                },
            ));
        }
    }
    if let Some(first) = absent.first() {
        a.problems.push(problem(
            Some(&first.path),
            Some(first.digest.clone()),
            ProblemKind::BadManifest {
                detail: format!(
                    "{} entr{} listed in {PACKAGE_MANIFEST} absent from the package, from this one (offset {}) on",
                    absent.len(),
                    if absent.len() == 1 { "y" } else { "ies" },
                    first.offset
                ),
            },
        ));
    }
    for (path, offset, _) in seen {
        a.problems.push(problem(
            Some(path),
            None,
            ProblemKind::BadManifest {
                detail: format!("at offset {offset}, not listed in {PACKAGE_MANIFEST}"),
            },
        ));
    }
    report.info.notes.push(format!(
        "{PACKAGE_MANIFEST} checked: {} entries at their recorded offsets, index.json pinned (made by {})",
        m.entries.len(),
        m.created_by.tool
    ));
}

/// A report of `blobs` blobs of `bytes` bytes, nothing else yet.
fn empty_report(blobs: u64, bytes: u64) -> AuditReport {
    AuditReport {
        images: 0,
        blobs,
        bytes,
        fast_checked_blobs: 0,
        fast_fallback_blobs: 0,
        problems: Vec::new(),
        info: AuditInfo::default(),
        seconds: 0.0,
    }
}

/// Checks the image graphs of one layout or archive (`index.json`), adding
/// its images, notes and problems (those of its stream first) to `report`.
fn check_graphs(mut a: Auditor, report: &mut AuditReport) {
    let Some(index) = a.metadata.get("index.json") else {
        if a.metadata.contains_key("manifest.json") {
            report.info.notes.push("docker-archive without index.json: file digests are not in their names, so only the stream was checked".into());
        } else {
            a.problems.push(problem(
                Some("index.json"),
                None,
                ProblemKind::BadManifest {
                    detail: "package has no index.json".into(),
                },
            ));
        }
        report.problems.extend(a.problems);
        return;
    };
    let index: IndexJson = match serde_json::from_slice(index) {
        Ok(i) => i,
        Err(e) => {
            a.problems.push(problem(
                Some("index.json"),
                None,
                ProblemKind::BadManifest {
                    detail: format!("not an OCI index: {e}"),
                },
            ));
            report.problems.extend(a.problems);
            return;
        }
    };
    report.images += index.manifests.len();
    let mut by_digest: BTreeMap<Digest, Problem> = BTreeMap::new();
    // Blobs whose content did not match their name: (media type, images using them).
    let mut mismatched: BTreeMap<Digest, (String, Vec<String>)> = BTreeMap::new();
    for root in &index.manifests {
        let name = ferry_store::layout::image_name(root)
            .map_or_else(|| root.digest.to_string(), str::to_owned);
        let walk = walk_in_memory(&[(name.clone(), root.clone())], &a.json);
        let mut found: Vec<(Descriptor, ProblemKind)> = Vec::new();
        for p in walk.problems {
            match p {
                StoreError::MissingBlob {
                    digest,
                    media_type,
                    size,
                    ..
                } => {
                    let d = Descriptor::new(media_type, digest, size);
                    found.push((
                        d.clone(),
                        leaf_problem(&a, &d).unwrap_or(ProblemKind::BadManifest {
                            detail: "manifest is not JSON or is over 4 MiB".into(),
                        }),
                    ));
                }
                StoreError::Manifest(m) => {
                    let d = Descriptor::new("", digest_of(&m), 0);
                    found.push((
                        d,
                        ProblemKind::BadManifest {
                            detail: m.to_string(),
                        },
                    ));
                }
                other => found.push((
                    root.clone(),
                    ProblemKind::BadManifest {
                        detail: other.to_string(),
                    },
                )),
            }
        }
        for node in walk.nodes {
            let d = &node.descriptor;
            if media::is_manifest_like(&d.media_type) || !d.urls.is_empty() {
                continue;
            }
            if let Some(kind) = leaf_problem(&a, d) {
                found.push((d.clone(), kind));
            } else if a
                .problems
                .iter()
                .any(|p| p.digest.as_ref() == Some(&d.digest))
            {
                mismatched
                    .entry(d.digest.clone())
                    .or_insert_with(|| (d.media_type.clone(), Vec::new()))
                    .1
                    .push(name.clone());
            }
        }
        for (d, kind) in found {
            by_digest
                .entry(d.digest.clone())
                .or_insert_with(|| Problem {
                    media_type: d.media_type.clone(),
                    ..problem(None, Some(d.digest.clone()), kind)
                })
                .images
                .push(name.clone());
        }
    }
    // A blob whose content did not match its name shows up once, with its images.
    for mut p in a.problems {
        if let Some(d) = &p.digest {
            if let Some(graph) = by_digest.remove(d) {
                p.images = graph.images;
                p.media_type = graph.media_type;
            } else if let Some((media_type, images)) = mismatched.remove(d) {
                p.images = images;
                p.media_type = media_type;
            }
        }
        report.problems.push(p);
    }
    report.problems.extend(by_digest.into_values());
}

fn digest_of(m: &ferry_store::descriptor::ManifestError) -> Digest {
    use ferry_store::descriptor::ManifestError as M;
    match m {
        M::Malformed { digest, .. }
        | M::MediaTypeMismatch { digest, .. }
        | M::TooLarge { digest, .. } => digest.clone(),
    }
}

fn leaf_problem(a: &Auditor, d: &Descriptor) -> Option<ProblemKind> {
    match a.blobs.get(&d.digest) {
        Some(&size) if size == d.size => None,
        Some(&size) => Some(ProblemKind::SizeMismatch {
            expected_size: d.size,
            actual_size: size,
        }),
        None if a
            .problems
            .iter()
            .any(|p| p.digest.as_ref() == Some(&d.digest)) =>
        {
            None
        } // reported as a digest mismatch
        None => Some(ProblemKind::Missing),
    }
}

/// True for a directory that is not a store (no `oci-layout`, no `index.json`)
/// but holds image archives: a vendor's "one file per image" package.
pub fn is_archive_dir(dir: &Path) -> bool {
    dir.is_dir()
        && !dir.join("oci-layout").exists()
        && !dir.join("index.json").exists()
        && !archive_files(dir).is_empty()
}

/// The image archives directly in `dir`, by name (other files are left out).
fn archive_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && file_is_image_archive(p))
        .collect();
    files.sort();
    files
}

fn file_is_image_archive(path: &Path) -> bool {
    use std::io::Read as _;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(crate::nested::HEAD_BYTES as u64)
                .read_to_end(&mut head)
        })
        .is_ok()
        && crate::nested::image_archive(&head).is_some()
}

/// Audits every image archive of a directory package ([`is_archive_dir`]),
/// one after the other, as one report: a problem names its archive.
pub fn audit_archive_dir(
    dir: &Path,
    threads: u32,
    progress: Arc<AtomicU64>,
) -> Result<AuditReport, PackageError> {
    let started = Instant::now();
    let mut total = AuditReport {
        images: 0,
        blobs: 0,
        bytes: 0,
        fast_checked_blobs: 0,
        fast_fallback_blobs: 0,
        problems: Vec::new(),
        info: Default::default(),
        seconds: 0.0,
    };
    for file in archive_files(dir) {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let r = audit_package(&file, threads, progress.clone())?;
        total.images += r.images;
        total.blobs += r.blobs;
        total.bytes += r.bytes;
        total.problems.extend(r.problems.into_iter().map(|mut p| {
            p.entry = Some(match &p.entry {
                Some(inner) => format!("{name}: {inner}"),
                None => name.clone(),
            });
            p
        }));
        total.info.notes.extend(r.info.notes);
    }
    total.seconds = started.elapsed().as_secs_f64();
    Ok(total)
}

/// Verifies a volume set's logical package (`reader`, see
/// [`crate::volume::VolumeSet::reader`]) as [`audit_package`] does a package:
/// every blob against its name, `ferry-package.json` against the content,
/// the image graphs. `label` names the set in problems.
pub fn audit_volume_set(
    reader: &mut dyn Read,
    label: &Path,
    progress: Arc<AtomicU64>,
) -> Result<AuditReport, PackageError> {
    let started = Instant::now();
    let mut a = Auditor {
        hashers: hashers(),
        ..Auditor::default()
    };
    let walked = crate::entries::for_each_entry_in(reader, label, progress, &mut a);
    a.stream_ended(walked)?;
    let mut report = empty_report(a.count, a.bytes);
    if let Some(bytes) = a.package_manifest.take() {
        check_package_manifest(&bytes, &mut a, &mut report);
    }
    check_graphs(a, &mut report);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::layout::named_entry;
    use std::io::Write;

    /// Two layers of several read-ahead chunks each, so the decoder thread runs
    /// ahead of the hashing while the tar walk is inside a blob.
    const LAYER: usize = 3 * (1 << 20) + 4097;

    fn layer(seed: u8) -> Vec<u8> {
        (0..LAYER)
            .map(|i| ((i as u64 * 2_654_435_761) >> 13) as u8 ^ seed)
            .collect()
    }

    /// The tar of a one-image OCI layout; `tamper` may change a layer's bytes
    /// (not its name) or drop it (None). Returns (tar, layer digests).
    fn layout_tar(tamper: impl Fn(usize, Vec<u8>) -> Option<Vec<u8>>) -> (Vec<u8>, Vec<Digest>) {
        let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
        let layers = [layer(1), layer(2)];
        let layer_descs: Vec<Descriptor> = layers
            .iter()
            .map(|l| Descriptor::new(media::OCI_LAYER_GZIP, Digest::sha256_of(l), l.len() as u64))
            .collect();
        let config_d = Digest::sha256_of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": Descriptor::new(media::OCI_CONFIG, config_d.clone(), config.len() as u64),
            "layers": layer_descs,
        }))
        .unwrap();
        let md = Digest::sha256_of(&manifest);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [named_entry(
                Descriptor::new(media::OCI_MANIFEST, md.clone(), manifest.len() as u64),
                "gcr.io/a/b:1",
            )],
        }))
        .unwrap();
        let mut files: Vec<(String, Vec<u8>)> = vec![
            (
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".into(), index),
            (format!("blobs/sha256/{}", md.hex()), manifest),
            (format!("blobs/sha256/{}", config_d.hex()), config),
        ];
        for (i, (l, d)) in layers.into_iter().zip(&layer_descs).enumerate() {
            if let Some(bytes) = tamper(i, l) {
                files.push((format!("blobs/sha256/{}", d.digest.hex()), bytes));
            }
        }
        let mut b = tar::Builder::new(Vec::new());
        for (name, bytes) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, &bytes[..]).unwrap();
        }
        (
            b.into_inner().unwrap(),
            layer_descs.into_iter().map(|d| d.digest).collect(),
        )
    }

    fn zstd_of(tar: &[u8]) -> Vec<u8> {
        zstd::encode_all(tar, 1).unwrap()
    }

    /// Multi-block xz (what `xz -T2` writes), so the decoder runs on 2 threads too.
    fn xz_of(tar: &[u8]) -> Vec<u8> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(2)
            .block_size(1 << 20)
            .preset(0)
            .encoder()
            .unwrap();
        let mut w = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        w.write_all(tar).unwrap();
        w.finish().unwrap()
    }

    fn audit(bytes: &[u8], ext: &str) -> AuditReport {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("pkg.{ext}"));
        std::fs::write(&path, bytes).unwrap();
        audit_package(&path, 2, Arc::new(AtomicU64::new(0))).unwrap()
    }

    #[test]
    fn read_ahead_audit_finds_a_flipped_byte_a_missing_blob_and_a_truncation() {
        type Compress = fn(&[u8]) -> Vec<u8>;
        let formats: [(&str, Compress); 2] = [("tar.zst", zstd_of), ("tar.xz", xz_of)];
        for (ext, compress) in formats {
            let (clean, _) = layout_tar(|_, l| Some(l));
            let r = audit(&compress(&clean), ext);
            assert!(r.problems.is_empty(), "{ext}: {:?}", r.problems);
            assert_eq!((r.images, r.blobs), (1, 4), "{ext}");

            let (flipped, layers) = layout_tar(|i, mut l| {
                if i == 1 {
                    l[LAYER / 2] ^= 0x10;
                }
                Some(l)
            });
            let r = audit(&compress(&flipped), ext);
            assert_eq!(r.problems.len(), 1, "{ext}: {:?}", r.problems);
            assert_eq!(r.problems[0].digest, Some(layers[1].clone()), "{ext}");
            assert!(
                matches!(r.problems[0].kind, ProblemKind::DigestMismatch { .. }),
                "{ext}: {:?}",
                r.problems
            );
            assert_eq!(r.problems[0].images, vec!["gcr.io/a/b:1".to_string()]);

            let (missing, layers) = layout_tar(|i, l| (i != 0).then_some(l));
            let r = audit(&compress(&missing), ext);
            assert_eq!(
                r.problems
                    .iter()
                    .map(|p| (p.digest.clone(), p.kind.clone()))
                    .collect::<Vec<_>>(),
                vec![(Some(layers[0].clone()), ProblemKind::Missing)],
                "{ext}"
            );

            let whole = compress(&clean);
            let r = audit(&whole[..whole.len() * 2 / 3], ext);
            assert!(
                r.problems
                    .iter()
                    .any(|p| matches!(p.kind, ProblemKind::CorruptPackage { .. })),
                "{ext}: {:?}",
                r.problems
            );
            // Garbage after a complete stream is corruption too.
            let mut trailing = whole.clone();
            trailing.extend_from_slice(b"not part of the package");
            let r = audit(&trailing, ext);
            assert!(
                r.problems
                    .iter()
                    .any(|p| matches!(p.kind, ProblemKind::CorruptPackage { .. })),
                "{ext}: {:?}",
                r.problems
            );
        }
    }
}
