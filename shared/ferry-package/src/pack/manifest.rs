//! `ferry-package.json`: ferry's own package manifest, the third entry of
//! every package ferry-pack writes.
//!
//! It lists every entry that follows it (manifests, configs, layers) with its
//! digest, size, media type and the offset of its data in the uncompressed
//! tar, the images with the references they were resolved from, and the tool
//! and options that made the package. Readers ignore fields they do not know:
//! later features add optional fields, never change these.
//! - volumes: `volume_set` (set id, totals) and per-entry `parts`;
//! - delta packages: `base` (what the receiver must already hold) and entries
//!   with no `offset` (held by the base, not carried);
//! - a signature over the metadata: a later entry `ferry-package.json.sig`
//!   signs these exact bytes, which pin `index.json` by digest and every
//!   other entry by digest;
//! - serving blobs from the package: `offset` + the zstd seek table (or the
//!   xz index) locate any blob without decoding the rest.

use std::collections::BTreeMap;

use ferry_store::Digest;
use serde::{Deserialize, Serialize};

/// The entry name of the package manifest inside the tar.
pub const PACKAGE_MANIFEST: &str = "ferry-package.json";
/// The value of [`PackageManifest::schema`] this version writes and reads.
pub const SCHEMA: &str = "ferry.package.v1";

/// The package manifest (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageManifest {
    /// [`SCHEMA`].
    pub schema: String,
    /// The tool and options that made the package (no time, host or path:
    /// the same inputs give the same bytes).
    pub created_by: CreatedBy,
    /// Digest and size of the `index.json` entry.
    pub index_json: Pinned,
    /// The named images, in `index.json` order.
    pub images: Vec<PackedImageRecord>,
    /// Artifacts attached to images by their subject (unnamed `index.json` entries).
    #[serde(default)]
    pub referrers: Vec<ReferrerRecord>,
    /// Every entry after this manifest, in tar order.
    pub entries: Vec<EntryRecord>,
    /// Fields a newer writer added (kept when read, so nothing is lost).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Who made the package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedBy {
    /// Tool name and version ("ferry-pack 0.1.0").
    pub tool: String,
    /// Options that change the bytes (compression and its level, frame size,
    /// platforms, referrers), as given.
    pub options: BTreeMap<String, String>,
}

/// A digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    /// Digest of the bytes.
    pub digest: Digest,
    /// Their size.
    pub size: u64,
}

/// One named image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedImageRecord {
    /// Full reference, as named in `index.json`.
    pub name: String,
    /// What the user asked for, verbatim.
    pub requested: String,
    /// Root manifest or index as packaged.
    pub digest: Digest,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest at the source: differs from `digest` only when an index was
    /// filtered to some platforms.
    pub source_digest: Digest,
    /// Platforms kept (empty: the index was kept whole).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

/// One referrer (signature, SBOM, attestation) travelling with its subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReferrerRecord {
    /// The referrer's manifest.
    pub digest: Digest,
    /// Its media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A manifest or an index.
    Manifest,
    /// A config, layer or artifact blob.
    Blob,
}

/// One tar entry after the package manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    /// Path inside the tar (`blobs/<alg>/<hex>`).
    pub path: String,
    /// Manifest or blob.
    pub kind: EntryKind,
    /// Digest of the entry's bytes.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type (from the descriptor that first referenced it).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Offset of the entry's data in the uncompressed tar (its header is the
    /// 512 bytes before).
    pub offset: u64,
}

impl EntryRecord {
    /// The entry as a descriptor (no annotations).
    pub fn descriptor(&self) -> ferry_store::Descriptor {
        ferry_store::Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size)
    }
}

impl PackageManifest {
    /// Parses a package manifest, refusing another schema.
    pub fn parse(bytes: &[u8]) -> Result<PackageManifest, String> {
        let m: PackageManifest =
            serde_json::from_slice(bytes).map_err(|e| format!("{PACKAGE_MANIFEST}: {e}"))?;
        if m.schema != SCHEMA {
            return Err(format!(
                "{PACKAGE_MANIFEST}: schema {:?}, this ferry reads {SCHEMA:?}",
                m.schema
            ));
        }
        Ok(m)
    }

    /// The exact bytes written into the package (compact JSON, fields in a
    /// fixed order, a final newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a package manifest serialises");
        v.push(b'\n');
        v
    }
}
