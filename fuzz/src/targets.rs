//! Bodies of ferry's fuzz targets, shared by the cargo-fuzz binaries
//! (`fuzz/fuzz_targets/*.rs`) and the stable-Rust corpus replay test
//! (`tests/e2e/fuzz_corpus.rs`); both include this file with `#[path]`.
//!
//! Every function takes arbitrary bytes, calls the real ferry library code and
//! panics only when that code panics or breaks one of the invariants checked
//! here. Errors returned by the library are expected and ignored.

// Each includer uses only some of the targets.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_package::collect::EntryFailure;
use ferry_package::detect::{detect, detect_bytes, PackageFormat};
use ferry_package::entries::{for_each_entry, EntryHandler};
use ferry_package::entry_rules::{check_entry, EntryAction, EntryKind};
use ferry_package::{import_package, ImportOptions, PackageError, PresentCheck};
use ferry_registry::Target;
use ferry_store::descriptor::children_of;
use ferry_store::layout::IndexJson;
use ferry_store::walk::walk_graph;
use ferry_store::{media, Descriptor, Digest, Reference, Store, StoreError};

/// Names of the targets, which are also the corpus directory names.
pub const TARGETS: [&str; 4] = ["package", "reference", "challenge", "manifest"];

/// Runs target `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "package" => package(data),
        "reference" => reference(data),
        "challenge" => challenge(data),
        "manifest" => manifest(data),
        other => panic!("unknown fuzz target {other:?}"),
    }
}

// ---------------------------------------------------------------- package

/// Decompressed entry bytes the pre-walk lets through before the full import
/// (keeps decompression bombs from turning into slow, disk-filling runs).
const MAX_ENTRY_BYTES: u64 = 4 << 20;

const ALL_KINDS: [EntryKind; 9] = [
    EntryKind::File,
    EntryKind::Directory,
    EntryKind::Symlink,
    EntryKind::Hardlink,
    EntryKind::Device,
    EntryKind::Fifo,
    EntryKind::Metadata,
    EntryKind::Other(b'V'),
    EntryKind::Other(0),
];

/// A normalised entry path must never leave the package or be empty.
///
/// Link targets are only aliases looked up among the package's own entries
/// (never paths on disk), and `check_entry` does not refuse a NUL in them
/// (a PAX `linkpath` can carry one), so only entry names are checked for NUL.
fn assert_safe_path(p: &str, input: &[u8]) {
    assert!(!p.is_empty(), "empty path accepted for {input:?}");
    assert!(!p.starts_with('/'), "absolute path {p:?} from {input:?}");
    for part in p.split('/') {
        assert!(
            !part.is_empty() && part != "." && part != "..",
            "unnormalised path {p:?} from {input:?}"
        );
    }
}

/// `check_entry` on a name and link target carved from the input.
fn entry_rules(data: &[u8]) {
    let (name, target) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    for kind in ALL_KINDS {
        for link in [target, Some(name), None] {
            match check_entry(name, kind, link) {
                Ok(EntryAction::File(p)) => {
                    assert!(matches!(kind, EntryKind::File), "{kind:?} read as a file");
                    assert_safe_path(&p, name);
                    assert!(!p.contains('\0'), "NUL in {p:?}");
                }
                Ok(EntryAction::Link { path, target }) => {
                    assert!(matches!(kind, EntryKind::Symlink | EntryKind::Hardlink));
                    assert_safe_path(&path, name);
                    assert!(!path.contains('\0'), "NUL in {path:?}");
                    assert_safe_path(&target, name);
                }
                Ok(EntryAction::Skip) => assert!(matches!(
                    kind,
                    EntryKind::File | EntryKind::Directory | EntryKind::Metadata
                )),
                Err(_) => {}
            }
        }
    }
}

/// Walks a package's entries, reading every file, refusing nothing, and
/// stopping once the decompressed content passes [`MAX_ENTRY_BYTES`].
#[derive(Default)]
struct BoundedWalk {
    bytes: u64,
    over_limit: bool,
    buf: Vec<u8>,
}

impl EntryHandler for BoundedWalk {
    fn file(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), EntryFailure> {
        assert_safe_path(path, path.as_bytes());
        assert!(!path.contains('\0'), "NUL in {path:?}");
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > MAX_ENTRY_BYTES {
            self.over_limit = true;
            return Err(EntryFailure::Input("fuzz size limit".into()));
        }
        self.buf.clear();
        reader
            .take(size)
            .read_to_end(&mut self.buf)
            .map_err(|e| EntryFailure::Input(e.to_string()))?;
        Ok(())
    }

    fn link(&mut self, path: String, target: String) -> Result<(), PackageError> {
        assert_safe_path(&path, path.as_bytes());
        assert_safe_path(&target, target.as_bytes());
        Ok(())
    }

    fn refused(&mut self, _error: PackageError) -> Result<(), PackageError> {
        Ok(())
    }
}

/// Package bytes: format detection, entry rules, the tar walk, then a full
/// import into a fresh store and an audit of the same file.
pub fn package(data: &[u8]) {
    let head = &data[..data.len().min(512)];
    let format = detect_bytes(head);
    entry_rules(&data[..data.len().min(4096)]);
    let Some(PackageFormat::Archive(compression)) = format else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("package");
    std::fs::write(&path, data).expect("write the package");
    assert_eq!(
        detect(&path).ok(),
        format,
        "detect and detect_bytes disagree"
    );

    let progress = Arc::new(AtomicU64::new(0));
    let mut walk = BoundedWalk::default();
    let _ = for_each_entry(&path, compression, 1, progress, &mut walk);
    if walk.over_limit {
        return;
    }

    let store = Store::open_for_write(&dir.path().join("store")).expect("open a fresh store");
    let options = ImportOptions {
        progress: Arc::new(AtomicU64::new(0)),
        threads: 1,
        present_check: PresentCheck::default(),
    };
    if let Ok(report) = import_package(&path, &store, &options) {
        let named = store
            .index_entries()
            .expect("index.json after a good import");
        for image in &report.images {
            assert!(
                named.iter().any(|d| d.digest == image.descriptor.digest),
                "imported image {} is not named in index.json",
                image.name
            );
        }
    }
    drop(store);
    let _ = ferry_package::audit::audit_package(&path, 1, Arc::new(AtomicU64::new(0)));
}

// -------------------------------------------------------------- reference

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// References and push targets: parsing, round trip, `is_full`, mapping.
pub fn reference(data: &[u8]) {
    let s = text(data);
    let s = s.as_ref();
    // Whole input as a reference.
    if let Ok(r) = s.parse::<Reference>() {
        let shown = r.to_string();
        let again: Reference = shown
            .parse()
            .unwrap_or_else(|e| panic!("{s:?} parsed as {r:?}, but {shown:?} does not: {e}"));
        assert_eq!(again, r, "round trip of {s:?} through {shown:?}");
        assert_eq!(again.to_string(), shown);
    }
    if Reference::is_full(s) {
        let r: Reference = s.parse().expect("a full reference parses");
        assert!(r.tag.is_some() || r.digest.is_some());
    }
    // First line: a --private-registry target; the rest: a source reference.
    let (target, source) = s.split_once('\n').unwrap_or((s, s));
    for t in [target, s] {
        if let Ok(t) = Target::parse(t) {
            let _ = (t.base_url(), t.hostname(), t.port(), t.mirror_endpoint());
            for src in [source, "gcr.io/a/b:1.0", s] {
                if let Ok(m) = t.map(src) {
                    let r: Reference = src.parse().expect("map succeeded, so the source parses");
                    assert_eq!(m.tag, r.tag);
                    assert!(m.repository.ends_with(&r.repository));
                    let _ = t.display_ref(&m);
                }
            }
        }
    }
}

// -------------------------------------------------------------- challenge

/// WWW-Authenticate header values.
pub fn challenge(data: &[u8]) {
    let s = text(data);
    for c in ferry_registry::challenge::parse(&s) {
        assert!(!c.scheme.is_empty(), "empty scheme from {s:?}");
        assert_eq!(c.scheme, c.scheme.to_ascii_lowercase());
        for k in c.params.keys() {
            assert_eq!(*k, k.to_ascii_lowercase());
        }
    }
}

// --------------------------------------------------------------- manifest

const MEDIA_TYPES: [&str; 6] = [
    media::OCI_INDEX,
    media::OCI_MANIFEST,
    media::DOCKER_MANIFEST_LIST,
    media::DOCKER_MANIFEST,
    media::OCI_CONFIG,
    "application/vnd.example.unknown+json",
];

/// Manifest and index bytes: `children_of` for every media type, `index.json`
/// parsing, and a graph walk over blobs carved from the input.
pub fn manifest(data: &[u8]) {
    let digest = Digest::sha256_of(data);
    for mt in MEDIA_TYPES {
        let desc = Descriptor::new(mt, digest.clone(), data.len() as u64);
        match children_of(&desc, data) {
            Ok(c) => {
                if !media::is_manifest_like(mt) {
                    assert!(c.descriptors.is_empty() && c.subject.is_none());
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let index = serde_json::from_slice::<IndexJson>(data).ok();

    // In-memory "store": the input split at 0xff bytes (never valid in JSON),
    // each piece under its own sha256. A digest not in the map picks a piece
    // by its first hex byte so fuzzed graphs have edges; ones starting with
    // 'f' are missing.
    let pieces: Vec<&[u8]> = data.split(|&b| b == 0xff).take(16).collect();
    let blobs: HashMap<Digest, &[u8]> = pieces.iter().map(|p| (Digest::sha256_of(p), *p)).collect();
    let load = |d: &Descriptor| -> Result<Vec<u8>, StoreError> {
        if let Some(b) = blobs.get(&d.digest) {
            return Ok(b.to_vec());
        }
        let hex = d.digest.hex();
        if hex.starts_with('f') {
            return Err(StoreError::MissingBlob {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: d.size,
                parent: String::new(),
            });
        }
        let i = usize::from_str_radix(&hex[..2], 16).expect("digest hex") % pieces.len();
        Ok(pieces[i].to_vec())
    };
    let mut roots: Vec<(String, Descriptor)> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let mt = MEDIA_TYPES[i % 4];
        roots.push((
            format!("piece{i}"),
            Descriptor::new(mt, Digest::sha256_of(piece), piece.len() as u64),
        ));
    }
    if let Some(index) = index {
        for (i, d) in index.manifests.into_iter().enumerate().take(64) {
            roots.push((format!("entry{i}"), d));
        }
    }
    let walk = walk_graph(&roots, load);
    let mut seen = HashSet::new();
    for node in &walk.nodes {
        assert!(
            seen.insert(&node.descriptor.digest),
            "{} listed twice by walk_graph",
            node.descriptor.digest
        );
    }
    for p in &walk.problems {
        let _ = p.to_string();
    }
}
