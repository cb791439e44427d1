//! A package file as a single-pass copy source: its tar entries in the
//! package's own order, with the tar safety rules applied, metadata read
//! whole (bounded), blobs named by digest handed over as streams. The copy
//! engine (`ferry_copy::stream`) verifies every blob; a mismatch or a
//! truncation found there becomes this crate's typed error naming the entry
//! and, for decoder faults, the offset in the package.
//!
//! xz is decoded with one thread: liblzma's threaded decoder holds two blocks
//! per thread (over 100 MiB with `xz -T0 -6` blocks), and layers are already
//! compressed, so stored in the xz as-is and decoded at ~1 GB/s by one thread,
//! faster than a registry takes them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_copy::stream::{Entry, EntryError, Flow, SinglePassSource};
use ferry_store::{Algorithm, Digest, StoreError};

use crate::collect::{read_metadata, EntryFailure, METADATA_FILES};
use crate::detect::{detect, Compression, PackageFormat};
use crate::entries::{for_each_entry, EntryHandler};
use crate::error::PackageError;

/// xz decoder threads for a single-pass read (see the module doc).
const DECODER_THREADS: u32 = 1;

/// A compressed or plain tar package read once.
pub struct PackageStream {
    path: PathBuf,
    compression: Compression,
}

impl PackageStream {
    /// The package at `path`, or `None` for a directory (read in place, not streamed).
    pub fn open(path: &Path) -> Result<Option<PackageStream>, PackageError> {
        Ok(match detect(path)? {
            PackageFormat::Archive(compression) => Some(PackageStream {
                path: path.to_owned(),
                compression,
            }),
            PackageFormat::LayoutDir => None,
        })
    }
}

/// A volume set read once as its logical package (see [`crate::volume`]).
pub struct VolumeSetStream {
    set: std::sync::Mutex<crate::volume::VolumeSet>,
    label: PathBuf,
}

impl VolumeSetStream {
    /// The set; `label` names it in errors.
    pub fn new(set: crate::volume::VolumeSet, label: &Path) -> VolumeSetStream {
        VolumeSetStream {
            set: std::sync::Mutex::new(set),
            label: label.to_owned(),
        }
    }

    /// The set back (for its report: rebuilt volumes, waiting images).
    pub fn into_inner(self) -> crate::volume::VolumeSet {
        self.set.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl SinglePassSource for VolumeSetStream {
    fn read_once(
        &self,
        progress: Arc<AtomicU64>,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<Flow, EntryError>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut visitor = Visitor {
            visit,
            stopped: false,
        };
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        let mut reader = set.reader();
        let walked =
            crate::entries::for_each_entry_in(&mut reader, &self.label, progress, &mut visitor);
        match walked {
            Err(_) if visitor.stopped => Ok(()),
            Err(e) => Err(Box::new(e)),
            Ok(()) => Ok(()),
        }
    }
}

/// Adapts the tar walk to the engine's visitor.
struct Visitor<'v> {
    visit: &'v mut dyn FnMut(Entry<'_>) -> Result<Flow, EntryError>,
    stopped: bool,
}

fn stop_marker() -> PackageError {
    PackageError::Malformed {
        entry: String::new(),
        why: "stop".into(),
    }
}

impl Visitor<'_> {
    fn flow(&mut self, flow: Result<Flow, EntryError>) -> Result<(), EntryFailure> {
        match flow {
            Ok(Flow::Continue) => Ok(()),
            Ok(Flow::Stop) => {
                self.stopped = true;
                Err(stop_marker().into())
            }
            Err(EntryError::Read(cause)) => Err(EntryFailure::Input(cause)),
            Err(EntryError::Mismatch {
                entry,
                expected,
                actual,
            }) => Err(PackageError::Store(StoreError::DigestMismatch {
                what: format!("entry {entry:?}"),
                expected,
                actual,
            })
            .into()),
        }
    }
}

impl EntryHandler for Visitor<'_> {
    fn file(&mut self, path: &str, size: u64, reader: &mut dyn Read) -> Result<(), EntryFailure> {
        if METADATA_FILES.contains(&path) || path == crate::pack::manifest::PACKAGE_MANIFEST {
            let bytes = read_metadata(path, size, reader)?;
            let flow = (self.visit)(Entry::Metadata { path, bytes });
            return self.flow(flow);
        }
        let Some(rest) = path.strip_prefix("blobs/") else {
            let flow = (self.visit)(Entry::Foreign {
                why: format!("{path} is not an OCI layout entry (docker-archive?)"),
            });
            return self.flow(flow);
        };
        let (alg, hex) = rest.split_once('/').unwrap_or(("", ""));
        let digest = Algorithm::from_name(alg)
            .and_then(|a| Digest::new(a, hex).ok())
            .ok_or_else(|| PackageError::BadBlobName {
                entry: path.to_owned(),
                why: "not a valid sha256/sha512 digest".into(),
            })?;
        let flow = (self.visit)(Entry::Blob {
            path,
            digest,
            size,
            reader,
        });
        self.flow(flow)
    }

    fn link(&mut self, path: String, _target: String) -> Result<(), PackageError> {
        let flow = (self.visit)(Entry::Foreign {
            why: format!("{path} is a link (docker-archive?)"),
        });
        match self.flow(flow) {
            Ok(()) => Ok(()),
            Err(EntryFailure::Package(e)) => Err(e),
            Err(EntryFailure::Input(cause)) => Err(PackageError::Malformed {
                entry: path,
                why: cause,
            }),
        }
    }
}

impl SinglePassSource for PackageStream {
    fn read_once(
        &self,
        progress: Arc<AtomicU64>,
        visit: &mut dyn FnMut(Entry<'_>) -> Result<Flow, EntryError>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let mut visitor = Visitor {
            visit,
            stopped: false,
        };
        let walked = for_each_entry(
            &self.path,
            self.compression,
            DECODER_THREADS,
            progress,
            &mut visitor,
        );
        match walked {
            Err(_) if visitor.stopped => Ok(()),
            Err(e) => Err(Box::new(e)),
            Ok(()) => Ok(()),
        }
    }
}

/// What ferry-push and ferry-diff read in one pass: a package file, or a
/// volume set read as the package it was cut from.
pub enum OneRead {
    /// A package file.
    File(PackageStream, u64),
    /// A volume set (its bytes: the logical package's tar).
    Set(Box<VolumeSetStream>, u64),
}

impl OneRead {
    /// `sources` as a volume set when they are one (several files, or a
    /// volume or a directory of them): foreign volumes refused, missing or
    /// damaged ones rebuilt from parity where they can be. `None`: a single
    /// other source. The caller reports or refuses what is missing before
    /// anything is read ([`OneRead::of_set`]).
    pub fn volume_set(
        sources: &[std::path::PathBuf],
    ) -> Result<Option<crate::volume::VolumeSet>, crate::volume::VolumeError> {
        match sources.first() {
            Some(first) if sources.len() > 1 || crate::volume::set::is_volume_source(first) => {
                crate::volume::VolumeSet::open(sources, None).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The set read as the package it was cut from (`label` names it in errors).
    pub fn of_set(set: crate::volume::VolumeSet, label: &Path) -> OneRead {
        let size = set
            .manifest
            .entries
            .last()
            .map_or(0, |e| e.offset + e.size + 1024);
        OneRead::Set(Box::new(VolumeSetStream::new(set, label)), size)
    }

    /// The package file at `path`; `None` when it cannot be read in one pass
    /// (a layout directory, a package that needs staging).
    pub fn file(path: &Path) -> Result<Option<OneRead>, PackageError> {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        Ok(PackageStream::open(path)?.map(|s| OneRead::File(s, size)))
    }

    /// The source to read, and its size in bytes (for a progress bar).
    pub fn source(&self) -> (&dyn SinglePassSource, u64) {
        match self {
            OneRead::File(s, size) => (s, *size),
            OneRead::Set(s, size) => (s.as_ref(), *size),
        }
    }
}
