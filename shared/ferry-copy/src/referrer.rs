//! OCI 1.1 referrers (signatures, SBOMs, attestations): artifact manifests
//! whose `subject` is an image. They travel with every image whose graph holds
//! their subject, and are listed under the subject's fallback tag
//! (`sha256-<hex>`, an OCI index) where clients without the referrers API
//! (oras, cosign, notation) look for them.
//!
//! Invariant: a fallback index only grows; entries written by others are kept.

use std::collections::BTreeSet;

use ferry_store::{media, Descriptor, Digest};
use serde_json::{json, Value};

/// An artifact manifest whose `subject` is some image.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// The artifact manifest (or index) as listed in the source's index.
    pub root: Descriptor,
    /// What it refers to.
    pub subject: Digest,
    /// Its entry in a fallback index: media type, digest, size, `artifactType`
    /// (the manifest's, else its config's media type) and its annotations.
    pub entry: Value,
}

/// The fallback tag of `subject`: `<algorithm>-<hex>`.
pub fn fallback_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm().name(), subject.hex())
}

/// Reads a manifest's `subject`, `artifactType` and annotations; `None` when
/// it has no subject.
pub fn referrer_of(root: &Descriptor, bytes: &[u8]) -> Option<Referrer> {
    let doc: Value = serde_json::from_slice(bytes).ok()?;
    let subject: Digest = doc["subject"]["digest"].as_str()?.parse().ok()?;
    let artifact_type = doc["artifactType"]
        .as_str()
        .or_else(|| doc["config"]["mediaType"].as_str());
    let mut entry = json!({
        "mediaType": root.media_type,
        "digest": root.digest.to_string(),
        "size": root.size,
    });
    if let Some(t) = artifact_type {
        entry["artifactType"] = json!(t);
    }
    if let Some(a) = doc.get("annotations").filter(|a| a.is_object()) {
        entry["annotations"] = a.clone();
    }
    Some(Referrer {
        root: root.clone(),
        subject,
        entry,
    })
}

/// Whether an image (its root and its manifests) holds `subject`.
pub fn holds_subject(root: &Descriptor, manifests: &[Descriptor], subject: &Digest) -> bool {
    &root.digest == subject || manifests.iter().any(|m| &m.digest == subject)
}

/// The digests an existing fallback index lists (empty when absent or not an index).
pub fn listed_in(existing: Option<&[u8]>) -> BTreeSet<String> {
    let index: Value = existing
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null);
    index["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|e| e["digest"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The fallback index of one subject after adding `referrers` to `existing`
/// (kept as it is); `None` when every referrer is already listed.
pub fn merged_fallback_index(existing: Option<&[u8]>, referrers: &[&Referrer]) -> Option<Vec<u8>> {
    let have = listed_in(existing);
    let missing: Vec<&&Referrer> = referrers
        .iter()
        .filter(|r| !have.contains(&r.root.digest.to_string()))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut index = existing
        .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        .filter(|i| i["manifests"].is_array())
        .unwrap_or_else(
            || json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []}),
        );
    let mut seen = BTreeSet::new();
    if let Some(list) = index["manifests"].as_array_mut() {
        for r in missing {
            if seen.insert(r.root.digest.to_string()) {
                list.push(r.entry.clone());
            }
        }
    }
    serde_json::to_vec(&index).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn artifact(subject: &Digest) -> (Descriptor, Vec<u8>) {
        let body = json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::sha256_of(b"{}").to_string(), "size": 2},
            "layers": [],
            "subject": {"mediaType": media::OCI_MANIFEST, "digest": subject.to_string(), "size": 5},
            "annotations": {"a": "b"}
        });
        let bytes = serde_json::to_vec(&body).unwrap();
        let root = Descriptor::new(
            media::OCI_MANIFEST,
            Digest::sha256_of(&bytes),
            bytes.len() as u64,
        );
        (root, bytes)
    }

    #[test]
    fn a_referrer_entry_carries_artifact_type_and_annotations() {
        let subject = Digest::sha256_of(b"image");
        let (root, bytes) = artifact(&subject);
        let r = referrer_of(&root, &bytes).unwrap();
        assert_eq!(r.subject, subject);
        assert_eq!(r.entry["artifactType"], "application/vnd.oci.empty.v1+json");
        assert_eq!(r.entry["annotations"]["a"], "b");
        assert_eq!(fallback_tag(&subject), format!("sha256-{}", subject.hex()));
        let plain = serde_json::to_vec(&json!({"schemaVersion": 2, "layers": []})).unwrap();
        assert!(referrer_of(&root, &plain).is_none());
    }

    #[test]
    fn a_fallback_index_keeps_foreign_entries_and_only_grows() {
        let subject = Digest::sha256_of(b"image");
        let (root, bytes) = artifact(&subject);
        let r = referrer_of(&root, &bytes).unwrap();
        let foreign = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
            "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": Digest::sha256_of(b"x").to_string(), "size": 1}]});
        let foreign = serde_json::to_vec(&foreign).unwrap();
        let merged = merged_fallback_index(Some(&foreign), &[&r]).unwrap();
        let listed = listed_in(Some(&merged));
        assert_eq!(listed.len(), 2);
        assert!(listed.contains(&r.root.digest.to_string()));
        assert!(merged_fallback_index(Some(&merged), &[&r]).is_none());
        let fresh = merged_fallback_index(None, &[&r, &r]).unwrap();
        assert_eq!(listed_in(Some(&fresh)).len(), 1);
    }
}
