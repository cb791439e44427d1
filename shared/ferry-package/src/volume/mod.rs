//! Volume sets: a package split across fixed-size media, each volume a valid
//! tar verifiable alone, lost or corrupt volumes rebuilt from Reed-Solomon
//! parity.
//!
//! A set of `n` data volumes `NAME.vol001-of-00n.tar.zst` (compressed as the
//! package would be) and `p` parity volumes `NAME.par1-of-p.tar` (plain tar:
//! parity bytes do not compress). Every data volume holds, in this order:
//! `ferry-volume.json` (its [`VolumeHeader`]: set id, index and totals, the
//! items it holds with their digests, sizes and offsets in the logical
//! package, the layout of the whole set, a content digest), then `oci-layout`,
//! `index.json` and `ferry-package.json` (the package metadata, in every
//! volume), then its items: whole entries `blobs/<alg>/<hex>` or parts
//! `blobs/<alg>/<hex>.part002-of-005` of an entry too large for the room
//! left, each with its own digest.
//!
//! Invariants:
//! 1. No volume file is larger than the volume size, by a single byte: the
//!    layout is planned before writing from the compressor's worst-case
//!    bound (`ZSTD_compressBound` per frame plus the seek table;
//!    `lzma_block_buffer_bound` per xz block plus the index; exact for a plain
//!    tar), and every file's size is checked after writing.
//! 2. Reproducible: the set id is the sha256 of the package manifest's bytes
//!    and the volume parameters; the same inputs give the same files.
//! 3. The logical package (the volumes' items rejoined in order) is byte for
//!    byte the uncompressed tar of the single package: readers present a set
//!    as that one tar, read volume by volume in one pass, so the importer, the
//!    push engine and the audit are the ones single packages use.
//! 4. Nothing read from a volume is used before it is verified: zstd frames
//!    are decoded whole and checked (frame checksum and seek table) before
//!    their bytes go on (xz and plain tar volumes, whose decoders hand bytes
//!    on first, are checked whole against the parity records when there is
//!    parity); every entry, rejoined, is checked against its digest by the
//!    reader of the logical package (the importer, the push engine and the
//!    audit verify every blob), so the set costs no hashing of its own;
//!    `ferry-verify` also checks every volume alone (every part's digest).
//! 5. Parity is Reed-Solomon over the data volume files (padded virtually to
//!    the longest) in stripes (bounded memory): any `p` missing or corrupt
//!    volumes are rebuilt, beside the set or in a scratch directory, only on
//!    that degraded path.

pub mod layout;
pub mod parity;
pub mod read;
pub mod set;
pub mod size;
#[cfg(test)]
mod tests;
pub mod write;

use std::path::{Path, PathBuf};

use ferry_store::{Digest, Hasher};
use serde::{Deserialize, Serialize};

pub use set::{VolumeSet, WaitingImage};
pub use size::parse_size;
pub use write::{write_volume_set, VolumeOptions, VolumeSetSummary};

/// The first entry of every volume.
pub const VOLUME_HEADER: &str = "ferry-volume.json";
/// The value of [`VolumeHeader::schema`].
pub const VOLUME_SCHEMA: &str = "ferry.volume.v1";
/// The entry of a parity volume holding its parity bytes.
pub const PARITY_ENTRY: &str = "ferry-parity.bin";
/// Largest `ferry-volume.json` accepted.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;

/// Data or parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds a slice of the package.
    Data,
    /// Holds Reed-Solomon parity over the data volume files.
    Parity,
}

/// `ferry-volume.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeHeader {
    /// [`VOLUME_SCHEMA`].
    pub schema: String,
    /// The set this volume belongs to (see [`set_id`]).
    pub set_id: Digest,
    /// Data or parity.
    pub role: Role,
    /// Its number among the volumes of its role, from 1.
    pub index: u32,
    /// Data volumes in the set.
    pub data_volumes: u32,
    /// Parity volumes in the set.
    pub parity_volumes: u32,
    /// No file of the set is larger.
    pub volume_size: u64,
    /// How the data volumes are compressed (`zstd-seekable`, `xz`, `none`).
    pub compression: String,
    /// For every data volume, the range `[first, end)` of indexes into
    /// `ferry-package.json`'s entries it holds (whole or in part): any volume
    /// tells which volume holds what.
    pub layout: Vec<[u32; 2]>,
    /// Data: sha256 over the list of its entries and items (`PATH DIGEST
    /// SIZE\n` each, in tar order), each checked as it is read. Parity:
    /// sha256 of its parity bytes.
    pub content_digest: Digest,
    /// Data: the items after the metadata, in tar order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<VolumeItem>,
    /// Parity: every data volume file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_files: Vec<DataFile>,
    /// Parity: the parity bytes' length (the longest data volume, rounded up
    /// to even) and the stripe they were computed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parity: Option<ParityInfo>,
}

/// One item of a data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeItem {
    /// Path in this volume's tar.
    pub path: String,
    /// Index of the entry in `ferry-package.json`.
    pub entry: u32,
    /// Digest of this item's bytes (the entry's digest when it is whole).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Offset of its first byte in the logical package's tar.
    pub offset: u64,
    /// Part number, from 1.
    pub part: u32,
    /// Parts of the entry (1: whole).
    pub parts: u32,
}

/// A data volume file, as recorded by parity volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the file.
    pub sha256: Digest,
}

/// How the parity was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParityInfo {
    /// Bytes of parity (= the longest data file, rounded up to even).
    pub shard_bytes: u64,
    /// Stripe length.
    pub stripe: u64,
    /// Codec.
    pub codec: String,
}

impl VolumeHeader {
    /// Parses a header, refusing another schema.
    pub fn parse(bytes: &[u8]) -> Result<VolumeHeader, String> {
        let h: VolumeHeader =
            serde_json::from_slice(bytes).map_err(|e| format!("{VOLUME_HEADER}: {e}"))?;
        if h.schema != VOLUME_SCHEMA {
            return Err(format!(
                "{VOLUME_HEADER}: schema {:?}, this ferry reads {VOLUME_SCHEMA:?}",
                h.schema
            ));
        }
        let count = match h.role {
            Role::Data => h.data_volumes,
            Role::Parity => h.parity_volumes,
        };
        if h.index == 0 || h.index > count || h.layout.len() != h.data_volumes as usize {
            return Err(format!(
                "{VOLUME_HEADER}: index {} of {count} is inconsistent",
                h.index
            ));
        }
        Ok(h)
    }

    /// Its exact bytes in a volume.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a volume header serialises");
        v.push(b'\n');
        v
    }

    /// "data volume 3 of 7" / "parity volume 1 of 2".
    pub fn label(&self) -> String {
        match self.role {
            Role::Data => format!("data volume {} of {}", self.index, self.data_volumes),
            Role::Parity => format!("parity volume {} of {}", self.index, self.parity_volumes),
        }
    }
}

/// The set id: sha256 of the package manifest's bytes and the volume parameters.
pub fn set_id(manifest_bytes: &[u8], volume_size: u64, parity: u32, data_volumes: u32) -> Digest {
    let mut h = Hasher::new(ferry_store::Algorithm::Sha256);
    h.update(VOLUME_SCHEMA.as_bytes());
    h.update(b"\n");
    h.update(Digest::sha256_of(manifest_bytes).to_string().as_bytes());
    h.update(format!("\n{volume_size}\n{parity}\n{data_volumes}\n").as_bytes());
    h.finish()
}

/// One line of a data volume's content list.
pub fn content_line(path: &str, digest: &Digest, size: u64) -> String {
    format!("{path} {digest} {size}\n")
}

/// Digits of the numbers in volume names (3 at least).
fn width(total: u32) -> usize {
    total.to_string().len().max(3)
}

/// `STEM.vol003-of-007.SUFFIX`.
pub fn data_name(stem: &str, index: u32, total: u32, suffix: &str) -> String {
    let w = width(total);
    format!("{stem}.vol{index:0w$}-of-{total:0w$}.{suffix}")
}

/// `STEM.par1-of-2.tar`.
pub fn parity_name(stem: &str, index: u32, total: u32) -> String {
    format!("{stem}.par{index}-of-{total}.tar")
}

/// `blobs/sha256/<hex>.part002-of-005`.
pub fn part_path(entry_path: &str, part: u32, parts: u32, width: usize) -> String {
    format!("{entry_path}.part{part:0width$}-of-{parts:0width$}")
}

/// The volume number a file name claims (`…volNNN-of-MMM…` or `…parN-of-M…`),
/// for naming a volume whose header cannot be read.
pub fn claimed_by_name(path: &Path) -> Option<(Role, u32, u32)> {
    let name = path.file_name()?.to_str()?;
    for (tag, role) in [(".vol", Role::Data), (".par", Role::Parity)] {
        if let Some(at) = name.rfind(tag) {
            let rest = &name[at + tag.len()..];
            let (idx, rest) = rest.split_once("-of-")?;
            let total: String = rest.chars().take_while(char::is_ascii_digit).collect();
            return Some((role, idx.parse().ok()?, total.parse().ok()?));
        }
    }
    None
}

/// Why a volume set could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Packing failed.
    #[error(transparent)]
    Pack(#[from] crate::pack::PackError),
    /// The cache store failed.
    #[error(transparent)]
    Store(#[from] ferry_store::StoreError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The volume size cannot hold even the metadata.
    #[error("a volume size of {size} bytes is too small: each volume must hold at least {needed} bytes (its header and the package metadata) plus some data")]
    TooSmall {
        /// The size asked for.
        size: u64,
        /// What one volume needs at least.
        needed: u64,
    },
    /// A volume is damaged (and cannot be rebuilt).
    #[error("{file}: {label}: {why}")]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Which volume it is ("data volume 3 of 7").
        label: String,
        /// What is wrong.
        why: String,
    },
    /// A file that is not a volume.
    #[error("{file} is not a ferry volume: {why}")]
    NotAVolume {
        /// The file.
        file: PathBuf,
        /// Why.
        why: String,
    },
    /// Volumes of several sets.
    #[error("{}", foreign_message(.set, .foreign))]
    Foreign {
        /// The set most volumes belong to.
        set: Digest,
        /// Volumes of another set: file and its set id.
        foreign: Vec<(PathBuf, Digest)>,
    },
    /// The same volume twice, with different bytes.
    #[error("{label} is given twice, with different contents: {first} and {second}")]
    Duplicate {
        /// Which.
        label: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// Volumes are missing or damaged beyond what parity rebuilds.
    #[error("{}", missing_message(.missing, .damaged, .parity_usable, .data_volumes))]
    Missing {
        /// Data volume numbers absent.
        missing: Vec<u32>,
        /// Data volume numbers present but damaged.
        damaged: Vec<u32>,
        /// Parity volumes usable.
        parity_usable: u32,
        /// Data volumes in the set.
        data_volumes: u32,
    },
    /// No volume at all.
    #[error("no ferry volume found in {0}")]
    Empty(String),
}

fn foreign_message(set: &Digest, foreign: &[(PathBuf, Digest)]) -> String {
    let list: Vec<String> = foreign
        .iter()
        .map(|(f, s)| format!("{} (set {})", f.display(), short(s)))
        .collect();
    format!(
        "refusing volumes of another set: {} (the others belong to set {})",
        list.join(", "),
        short(set)
    )
}

fn missing_message(missing: &[u32], damaged: &[u32], parity: &u32, total: &u32) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "data volume(s) {} of {total} missing",
            numbers(missing)
        ));
    }
    if !damaged.is_empty() {
        parts.push(format!(
            "data volume(s) {} of {total} damaged",
            numbers(damaged)
        ));
    }
    format!(
        "{}; {} usable parity volume(s) rebuild at most {}",
        parts.join(", "),
        parity,
        parity
    )
}

/// "3, 5, 6".
pub fn numbers(list: &[u32]) -> String {
    list.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first 12 hex digits of a set id.
pub fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}
