//! Importing a package into a store: one streaming pass, then names last.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::layout::named_entry;
use ferry_store::walk::walk_graph;
use ferry_store::{media, Descriptor, Digest, Store, StoreError};

use crate::assemble::package_roots;
use crate::collect::{Collector, Counts, EntryFailure, PresentCheck, ReplacedBlob};
use crate::detect::{detect, PackageFormat};
use crate::entries::{for_each_entry, EntryHandler};
use crate::entry_rules::{check_entry, EntryAction, EntryKind};
use crate::error::PackageError;

/// One image of an imported package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// Its full reference, e.g. `gcr.io/anthos-baremetal-release/foo:1.8.0`.
    pub name: String,
    /// Its top-level manifest or index.
    pub descriptor: Descriptor,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The detected format.
    pub format: PackageFormat,
    /// Images now named in the store's `index.json`.
    pub images: Vec<ImportedImage>,
    /// Referrers (unnamed artifacts with a `subject`) kept in `index.json`.
    pub referrers: usize,
    /// Blobs written / already present.
    pub counts: Counts,
    /// Blobs that were in the store but failed their check, rewritten from
    /// the package (counted in `counts` as written).
    pub replaced: Vec<ReplacedBlob>,
    /// Blobs reachable from the package's images.
    pub graph_blobs: usize,
}

/// How to read a package.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Receives the bytes of the package consumed so far (for progress bars).
    pub progress: Arc<AtomicU64>,
    /// Decoder threads for multi-block xz.
    pub threads: u32,
    /// How blobs already in the store are checked before being kept.
    pub present_check: PresentCheck,
}

/// Reads the package at `path` (any supported format) into `store`.
///
/// On success every image's graph is complete and verified in the store and
/// named in `index.json`; on error nothing new is named, and a rerun resumes
/// without rewriting blobs already at their final paths that pass
/// `options.present_check` (those that fail are replaced and reported).
pub fn import_package(
    path: &Path,
    store: &Store,
    options: &ImportOptions,
) -> Result<ImportReport, PackageError> {
    let format = detect(path)?;
    let mut collector = Collector::new(store, options.present_check);
    let progress = options.progress.clone();
    match format {
        PackageFormat::Archive(compression) => {
            for_each_entry(path, compression, options.threads, progress, &mut collector)?
        }
        PackageFormat::LayoutDir => read_dir(path, &mut collector, progress)?,
    }
    finish_import(path, format, collector, store)
}

/// Reads a volume set (its logical package, volume by volume in one pass)
/// into `store`, as [`import_package`] does a package; `label` names the set
/// in errors. When volumes are missing beyond repair, the set holds only the
/// complete images: those are imported (the caller reports the others).
pub fn import_volume_set(
    set: &mut crate::volume::VolumeSet,
    label: &Path,
    store: &Store,
    options: &ImportOptions,
) -> Result<ImportReport, PackageError> {
    let compression = match set.header.compression.as_str() {
        "xz" => crate::detect::Compression::Xz,
        "none" => crate::detect::Compression::None,
        _ => crate::detect::Compression::Zstd,
    };
    let mut collector = Collector::new(store, options.present_check);
    let mut reader = set.reader();
    crate::entries::for_each_entry_in(
        &mut reader,
        label,
        options.progress.clone(),
        &mut collector,
    )?;
    finish_import(label, PackageFormat::Archive(compression), collector, store)
}

/// Names the images whose graphs are complete in the store (names last).
fn finish_import(
    path: &Path,
    format: PackageFormat,
    collector: Collector<'_>,
    store: &Store,
) -> Result<ImportReport, PackageError> {
    let roots = package_roots(&collector, store).map_err(|e| match e {
        PackageError::NotAPackage { why, .. } => PackageError::NotAPackage {
            path: path.into(),
            why,
        },
        other => other,
    })?;
    let mut walked_roots = roots.named.clone();
    walked_roots.extend(
        roots
            .referrers
            .iter()
            .map(|d| (format!("referrer {}", d.digest), d.clone())),
    );
    let walk = walk_graph(&walked_roots, |d| {
        store.read_small_blob(d, MAX_MANIFEST_BYTES)
    });
    let mut problems = walk.problems;
    for node in &walk.nodes {
        let d = &node.descriptor;
        if media::is_manifest_like(&d.media_type)
            || !d.urls.is_empty()
            || store.has_blob(&d.digest, d.size)
        {
            continue;
        }
        let on_disk = std::fs::metadata(store.blob_path(&d.digest))
            .ok()
            .map(|m| m.len());
        problems.push(match on_disk {
            Some(actual) => StoreError::SizeMismatch {
                what: format!("blob referenced by {}", node.parent),
                digest: d.digest.clone(),
                expected: d.size,
                actual,
            },
            None => StoreError::MissingBlob {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: d.size,
                parent: node.parent.clone(),
            },
        });
    }
    if !problems.is_empty() {
        return Err(PackageError::Graph(problems));
    }
    // Files written by this run that no image uses (stray blobs, docker-archive
    // leftovers such as legacy per-layer json files): remove them.
    let reachable: HashSet<&Digest> = walk.nodes.iter().map(|n| &n.descriptor.digest).collect();
    for file in collector.all_files() {
        if file.written_now && !reachable.contains(&file.digest) {
            let _ = std::fs::remove_file(store.blob_path(&file.digest));
        }
    }
    let mut entries: Vec<Descriptor> = roots
        .named
        .iter()
        .map(|(name, d)| named_entry(d.clone(), name))
        .collect();
    entries.extend(roots.referrers.iter().cloned());
    store.sync_journal()?;
    store.upsert_index_entries(&entries)?;
    Ok(ImportReport {
        format,
        referrers: roots.referrers.len(),
        images: roots
            .named
            .into_iter()
            .map(|(name, descriptor)| ImportedImage { name, descriptor })
            .collect(),
        counts: collector.counts,
        replaced: collector.replaced,
        graph_blobs: walk.nodes.len(),
    })
}

fn read_dir(
    root: &Path,
    collector: &mut Collector<'_>,
    progress: Arc<AtomicU64>,
) -> Result<(), PackageError> {
    collector.keep_other_files =
        !root.join("index.json").exists() && root.join("manifest.json").exists();
    collector.consumed = Some(progress);
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1);
    for item in walker
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || e.file_name() != ferry_store::layout::STATE_DIR)
    {
        let item = item.map_err(|e| PackageError::Io {
            path: e
                .path()
                .map_or_else(|| root.to_path_buf(), Path::to_path_buf),
            source: e
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other("directory loop")),
        })?;
        let rel = item
            .path()
            .strip_prefix(root)
            .expect("walkdir stays below root");
        let rel_bytes = rel.as_os_str().as_encoded_bytes();
        let ft = item.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Directory
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Device
        };
        let link_target = if ft.is_symlink() {
            let t = std::fs::read_link(item.path()).map_err(|source| PackageError::Io {
                path: item.path().into(),
                source,
            })?;
            Some(t.into_os_string().into_encoded_bytes())
        } else {
            None
        };
        let rel_path = match check_entry(rel_bytes, kind, link_target.as_deref())? {
            EntryAction::Skip => continue,
            EntryAction::Link { path, target } => {
                collector.link(path, target)?;
                continue;
            }
            EntryAction::File(p) => p,
        };
        let mut file = std::fs::File::open(item.path()).map_err(|source| PackageError::Io {
            path: item.path().into(),
            source,
        })?;
        let size = file
            .metadata()
            .map_err(|source| PackageError::Io {
                path: item.path().into(),
                source,
            })?
            .len();
        match collector.file(&rel_path, size, &mut file) {
            Ok(()) => {}
            Err(EntryFailure::Input(cause)) => {
                return Err(PackageError::Io {
                    path: item.path().into(),
                    source: std::io::Error::other(cause),
                })
            }
            Err(EntryFailure::Package(e)) => return Err(e),
        }
    }
    Ok(())
}
