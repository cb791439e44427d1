//! OCI descriptors and the parsed view of manifests and indexes.
//!
//! Manifests are always kept as their original bytes ([`RawManifest`]); the
//! parsed structs here exist only to walk the graph and are never serialised
//! back in place of those bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media::{self, Kind};

/// Platform of an index entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Operating system (`linux`, …).
    pub os: String,
    /// CPU variant (`v8`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// A content descriptor: media type, digest and size of a blob, plus annotations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Annotations (names live here in `index.json`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform, for entries of an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// External URLs (foreign layers): such blobs may be absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// A descriptor with no annotations, platform or URLs.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
            urls: Vec::new(),
        }
    }
}

/// Annotation with the full image reference written by containerd and Docker 25+.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// OCI reference-name annotation (often only a tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Largest manifest ferry accepts (distribution's limit is 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// Why manifest bytes could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not valid JSON of the expected shape.
    #[error("{digest}: malformed {media_type} JSON: {source}")]
    Malformed {
        /// Digest of the manifest.
        digest: Digest,
        /// The media type it was read as.
        media_type: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest declares a `mediaType` different from its descriptor's.
    #[error("{digest}: descriptor says {expected} but the manifest says {actual}")]
    MediaTypeMismatch {
        /// Digest of the manifest.
        digest: Digest,
        /// Media type in the descriptor.
        expected: String,
        /// Media type in the manifest body.
        actual: String,
    },
    /// The manifest is larger than registries accept.
    #[error("{digest}: manifest is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge {
        /// Digest of the manifest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
}

#[derive(Deserialize)]
struct ManifestJson {
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
}

/// The children of a manifest or index, in push order (config before layers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Children {
    /// Config and layers of a manifest, or child manifests of an index.
    pub descriptors: Vec<Descriptor>,
    /// The `subject` the manifest refers to, if any (may legitimately be absent).
    pub subject: Option<Descriptor>,
}

/// Parses manifest or index bytes described by `desc` and lists its children.
///
/// Leaf media types have no children. The body's own `mediaType`, when present,
/// must agree with the descriptor.
pub fn children_of(desc: &Descriptor, bytes: &[u8]) -> Result<Children, ManifestError> {
    let kind = media::kind_of(&desc.media_type);
    if kind == Kind::Blob {
        return Ok(Children {
            descriptors: Vec::new(),
            subject: None,
        });
    }
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            digest: desc.digest.clone(),
            size: bytes.len() as u64,
        });
    }
    let parsed: ManifestJson =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            source,
        })?;
    if let Some(actual) = parsed.media_type {
        if actual != desc.media_type {
            return Err(ManifestError::MediaTypeMismatch {
                digest: desc.digest.clone(),
                expected: desc.media_type.clone(),
                actual,
            });
        }
    }
    let descriptors = match kind {
        Kind::Index => parsed.manifests,
        _ => {
            let config = parsed.config.ok_or_else(|| ManifestError::Malformed {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
                source: serde::de::Error::missing_field("config"),
            })?;
            std::iter::once(config).chain(parsed.layers).collect()
        }
    };
    Ok(Children {
        descriptors,
        subject: parsed.subject,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc_for(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256_of(bytes), bytes.len() as u64)
    }

    #[test]
    fn manifest_children_are_config_then_layers() {
        let cfg = Digest::sha256_of(b"cfg");
        let l1 = Digest::sha256_of(b"l1");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{cfg}","size":3}},"layers":[{{"mediaType":"{}","digest":"{l1}","size":2}}]}}"#,
            media::OCI_MANIFEST,
            media::OCI_CONFIG,
            media::OCI_LAYER_GZIP
        );
        let c = children_of(
            &desc_for(media::OCI_MANIFEST, body.as_bytes()),
            body.as_bytes(),
        )
        .unwrap();
        let digests: Vec<_> = c.descriptors.iter().map(|d| d.digest.clone()).collect();
        assert_eq!(digests, vec![cfg, l1]);
    }

    #[test]
    fn media_type_mismatch_is_an_error() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            media::OCI_INDEX
        );
        let err = children_of(
            &desc_for(media::DOCKER_MANIFEST_LIST, body.as_bytes()),
            body.as_bytes(),
        );
        assert!(matches!(err, Err(ManifestError::MediaTypeMismatch { .. })));
    }

    #[test]
    fn malformed_json_names_the_digest() {
        let d = desc_for(media::OCI_MANIFEST, b"{not json");
        let err = children_of(&d, b"{not json").unwrap_err().to_string();
        assert!(err.contains(&d.digest.to_string()), "{err}");
    }

    #[test]
    fn unknown_media_types_are_leaves() {
        let d = desc_for("application/vnd.example+json", b"{}");
        assert!(children_of(&d, b"garbage").unwrap().descriptors.is_empty());
    }
}
