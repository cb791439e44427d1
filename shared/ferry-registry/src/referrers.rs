//! OCI 1.1 referrers (signatures, SBOMs, attestations) carried with their
//! images: artifact manifests whose `subject` is an image of the store, kept
//! unnamed in its `index.json`. They are pushed by digest into the
//! repository of every image whose graph holds their subject; since
//! distribution v2.8 has no referrers API, ferry then maintains the subject's
//! fallback tag (`sha256-<hex>`): an OCI index listing its referrers, as
//! OCI-aware clients (oras, cosign, notation) read it.
//!
//! Invariants: a fallback index only grows (entries written by other clients
//! are kept), and it is written after every manifest it lists exists in the
//! repository (distribution checks that too).

use std::collections::BTreeSet;

use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::layout::{image_name, Store};
use ferry_store::{media, Descriptor, Digest, StoreError};
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::RegistryError;

/// An artifact manifest of the store whose `subject` is some image.
#[derive(Debug, Clone)]
pub struct Referrer {
    /// The artifact manifest (or index) as listed in the store's `index.json`.
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

/// The unnamed `index.json` entries of `store` that have a `subject`; other
/// unnamed entries are returned apart (nothing says where they belong).
pub fn find_referrers(store: &Store) -> Result<(Vec<Referrer>, Vec<Descriptor>), StoreError> {
    let mut referrers = Vec::new();
    let mut orphans = Vec::new();
    for entry in store.index_entries()? {
        if image_name(&entry).is_some() {
            continue;
        }
        if !media::is_manifest_like(&entry.media_type) {
            orphans.push(entry);
            continue;
        }
        let bytes = store.read_small_blob(&entry, MAX_MANIFEST_BYTES)?;
        match referrer_of(&entry, &bytes) {
            Some(r) => referrers.push(r),
            None => orphans.push(entry),
        }
    }
    Ok((referrers, orphans))
}

/// Reads a manifest's `subject`, `artifactType` and annotations.
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

/// The digests listed in `repo`'s fallback index for `subject` (empty when absent).
fn listed(
    client: &Client,
    repo: &str,
    subject: &Digest,
) -> Result<(Option<Value>, BTreeSet<String>), RegistryError> {
    let Some((_, bytes)) = client.get_manifest(repo, &fallback_tag(subject))? else {
        return Ok((None, BTreeSet::new()));
    };
    let index: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let digests = index["manifests"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|e| e["digest"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok((Some(index).filter(|i| i["manifests"].is_array()), digests))
}

/// Whether every referrer in `referrers` is listed under its subject's fallback tag in `repo`.
pub fn all_listed(
    client: &Client,
    repo: &str,
    referrers: &[Referrer],
) -> Result<bool, RegistryError> {
    let subjects: BTreeSet<&Digest> = referrers.iter().map(|r| &r.subject).collect();
    for subject in subjects {
        let (_, have) = listed(client, repo, subject)?;
        if referrers
            .iter()
            .filter(|r| &r.subject == subject)
            .any(|r| !have.contains(&r.root.digest.to_string()))
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Adds the referrers of `subject` to its fallback index in `repo` (their
/// manifests must already be there). Returns whether the index was written;
/// a dry run only answers whether it would be.
pub fn update_fallback_index(
    client: &Client,
    repo: &str,
    subject: &Digest,
    referrers: &[&Referrer],
    dry_run: bool,
) -> Result<bool, RegistryError> {
    let (existing, have) = listed(client, repo, subject)?;
    let missing: Vec<&&Referrer> = referrers
        .iter()
        .filter(|r| !have.contains(&r.root.digest.to_string()))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    if dry_run {
        return Ok(true);
    }
    let mut index = existing.unwrap_or_else(
        || json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []}),
    );
    let list = index["manifests"]
        .as_array_mut()
        .expect("checked by listed");
    let mut seen = BTreeSet::new();
    for r in missing {
        if seen.insert(r.root.digest.to_string()) {
            list.push(r.entry.clone());
        }
    }
    let bytes = serde_json::to_vec(&index).expect("index serialises");
    client.put_manifest(repo, &fallback_tag(subject), media::OCI_INDEX, &bytes)?;
    Ok(true)
}

/// Lists every referrer under its subject's fallback tag in `repo` (see
/// [`update_fallback_index`]). Returns how many fallback tags were (or, in a
/// dry run, would be) written; an error names the fallback tag it concerns.
pub fn list_under_fallback_tags(
    client: &Client,
    repo: &str,
    referrers: &[Referrer],
    dry_run: bool,
) -> Result<u64, (String, RegistryError)> {
    let subjects: BTreeSet<&Digest> = referrers.iter().map(|r| &r.subject).collect();
    let mut written = 0;
    for subject in subjects {
        let of_subject: Vec<&Referrer> =
            referrers.iter().filter(|r| &r.subject == subject).collect();
        if update_fallback_index(client, repo, subject, &of_subject, dry_run)
            .map_err(|e| (fallback_tag(subject), e))?
        {
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_referrer_entry_carries_artifact_type_and_annotations() {
        let subject = Digest::sha256_of(b"image");
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
        let r = referrer_of(&root, &bytes).unwrap();
        assert_eq!(r.subject, subject);
        assert_eq!(r.entry["artifactType"], "application/vnd.oci.empty.v1+json");
        assert_eq!(r.entry["annotations"]["a"], "b");
        assert_eq!(fallback_tag(&subject), format!("sha256-{}", subject.hex()));
        let plain = serde_json::to_vec(&json!({"schemaVersion": 2, "layers": []})).unwrap();
        assert!(referrer_of(&root, &plain).is_none());
    }
}
