//! Iterating a tar package's entries once, with the safety rules applied,
//! for any consumer (the importer, the auditor). Metadata entries claiming
//! absurd sizes are refused before the tar parser buffers them
//! ([`crate::header_guard`]).

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ferry_store::read_ahead::ReadAhead;

use crate::collect::EntryFailure;
use crate::decompress::Decompressed;
use crate::detect::Compression;
use crate::entry_rules::{check_entry, kind_of_tar, EntryAction};
use crate::error::PackageError;
use crate::header_guard::HeaderGuard;

/// Receives the entries of a package.
pub trait EntryHandler {
    /// A regular file at a normalised path; `reader` yields exactly `size` bytes
    /// unless the package is truncated.
    fn file(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), EntryFailure>;
    /// A link that stays inside the package.
    fn link(&mut self, path: String, target: String) -> Result<(), PackageError>;
    /// An entry refused by the safety rules. Returning `Err` stops the walk
    /// (import); returning `Ok` skips the entry and goes on (audit).
    fn refused(&mut self, error: PackageError) -> Result<(), PackageError> {
        Err(error)
    }
    /// Where the next file's data starts in the uncompressed tar (called just
    /// before [`EntryHandler::file`]); only the auditor uses it, to check a
    /// package manifest's offsets.
    fn data_offset(&mut self, _offset: u64) {}
}

/// The error for a package `path` of `format` that stops making sense, at
/// the offset `progress` has reached.
fn corruption<'a>(
    path: &'a Path,
    format: &'static str,
    progress: &'a AtomicU64,
) -> impl Fn(String) -> PackageError + 'a {
    move |cause| PackageError::Corrupt {
        path: path.into(),
        format,
        offset: progress.load(Ordering::Relaxed),
        cause,
    }
}

/// Streams every entry of the tar package at `path` to `handler`, then checks
/// that the compressed stream ends cleanly (integrity trailer, no trailing garbage).
pub fn for_each_entry(
    path: &Path,
    compression: Compression,
    threads: u32,
    progress: Arc<AtomicU64>,
    handler: &mut dyn EntryHandler,
) -> Result<(), PackageError> {
    let corrupt = corruption(path, format_name(compression), &progress);
    let decompressed = Decompressed::open(path, compression, threads, progress.clone())?;
    let mut archive = tar::Archive::new(HeaderGuard::new(decompressed));
    walk_archive(&mut archive, handler, &corrupt)?;
    archive
        .into_inner()
        .into_inner()
        .finish()
        .map_err(|e| corrupt(e.to_string()))
}

/// Streams every entry of the plain tar read from `reader` (a volume set's
/// logical package) to `handler`, reading it to its end; `label` names it in
/// errors, `progress` counts the tar bytes read.
pub fn for_each_entry_in(
    reader: &mut dyn Read,
    label: &Path,
    progress: Arc<AtomicU64>,
    handler: &mut dyn EntryHandler,
) -> Result<(), PackageError> {
    let corrupt = corruption(label, "volume set", &progress);
    let counting = crate::decompress::CountingReader::new(reader, progress.clone());
    let mut archive = tar::Archive::new(HeaderGuard::new(counting));
    walk_archive(&mut archive, handler, &corrupt)?;
    std::io::copy(&mut archive.into_inner().into_inner(), &mut std::io::sink())
        .map(|_| ())
        .map_err(|e| corrupt(e.to_string()))
}

/// Buffers of decompressed bytes the decoder thread of
/// [`for_each_entry_read_ahead`] may run ahead by (bounded memory: 4 x 1 MiB).
const READ_AHEAD_CHUNK: usize = 1 << 20;
const READ_AHEAD_DEPTH: usize = 4;

/// [`for_each_entry`] with the reading and decompression on a thread of their
/// own ([`ReadAhead`]), a few MiB ahead of `handler`, so that decoding overlaps
/// what the handler does with the bytes (hashing them: `ferry-verify PKG`).
/// Same entries, same checks, same errors.
pub fn for_each_entry_read_ahead(
    path: &Path,
    compression: Compression,
    threads: u32,
    progress: Arc<AtomicU64>,
    handler: &mut dyn EntryHandler,
) -> Result<(), PackageError> {
    let corrupt = corruption(path, format_name(compression), &progress);
    let decompressed = Decompressed::open(path, compression, threads, progress.clone())?;
    let ahead =
        ReadAhead::new(decompressed, READ_AHEAD_CHUNK, READ_AHEAD_DEPTH).map_err(|source| {
            PackageError::Io {
                path: path.into(),
                source,
            }
        })?;
    let mut archive = tar::Archive::new(HeaderGuard::new(ahead));
    walk_archive(&mut archive, handler, &corrupt)?;
    let mut ahead = archive.into_inner().into_inner();
    // Whatever follows the tar's end still has to decode cleanly (checked by
    // the decoder as it goes); then the decoder itself checks its trailer.
    std::io::copy(&mut ahead, &mut std::io::sink()).map_err(|e| corrupt(e.to_string()))?;
    ahead
        .into_inner()
        .and_then(Decompressed::finish)
        .map_err(|e| corrupt(e.to_string()))
}

/// The name of a tar's format with `compression`, for messages.
pub fn format_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "tar",
        Compression::Gzip => "tar.gz",
        Compression::Xz => "tar.xz",
        Compression::Zstd => "tar.zst",
    }
}

/// Streams every entry of `archive` to `handler` with the safety rules
/// applied; `corrupt` turns a tar or decoder failure into the caller's error.
pub(crate) fn walk_archive<R: Read>(
    archive: &mut tar::Archive<R>,
    handler: &mut dyn EntryHandler,
    corrupt: &dyn Fn(String) -> PackageError,
) -> Result<(), PackageError> {
    let entries = archive.entries().map_err(|e| corrupt(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let kind = kind_of_tar(entry.header().entry_type());
        let raw_name = entry.path_bytes().into_owned();
        let link_target = entry.link_name_bytes().map(|t| t.into_owned());
        let action = match check_entry(&raw_name, kind, link_target.as_deref()) {
            Ok(a) => a,
            Err(e) => {
                handler.refused(e)?;
                continue;
            }
        };
        match action {
            EntryAction::Skip => {}
            EntryAction::Link { path, target } => handler.link(path, target)?,
            EntryAction::File(p) => {
                let size = entry.size();
                handler.data_offset(entry.raw_file_position());
                match handler.file(&p, size, &mut entry) {
                    Ok(()) => {}
                    Err(EntryFailure::Input(cause)) => return Err(corrupt(cause)),
                    Err(EntryFailure::Package(e)) => return Err(e),
                }
            }
        }
    }
    Ok(())
}
