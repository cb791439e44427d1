//! Attaching OCI 1.1 referrers (signatures, SBOMs, attestations) to images of
//! a generated layout, as `oras copy -r --to-oci-layout` stores them: an
//! artifact manifest whose `subject` is the image, listed in `index.json`
//! without a name.

use std::fs;
use std::path::Path;

use anyhow::Context;
use ferry_store::{media, Descriptor};

use crate::image::write_blob;

/// The OCI empty config (`{}`) used by artifacts.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// Writes an artifact of `artifact_type` holding `payload` with `subject` as
/// its subject into the layout at `dir`, and appends it to `index.json`
/// unnamed. Returns the artifact manifest's descriptor.
pub fn add_referrer(
    dir: &Path,
    subject: &Descriptor,
    artifact_type: &str,
    payload: &[u8],
) -> anyhow::Result<Descriptor> {
    let config = write_blob(dir, EMPTY_CONFIG_MEDIA_TYPE, b"{}")?;
    let layer = write_blob(dir, artifact_type, payload)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": config.media_type, "digest": config.digest.to_string(), "size": config.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest.to_string(), "size": layer.size}],
        "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.size},
        "annotations": {"org.opencontainers.image.created": "2026-11-27T00:00:00Z"}
    });
    let bytes = serde_json::to_vec(&manifest)?;
    let desc = write_blob(dir, media::OCI_MANIFEST, &bytes)?;
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(
        &fs::read(&index_path).with_context(|| format!("reading {}", index_path.display()))?,
    )?;
    index["manifests"]
        .as_array_mut()
        .context("index.json has no manifests array")?
        .push(serde_json::json!({
            "mediaType": desc.media_type,
            "digest": desc.digest.to_string(),
            "size": desc.size,
            "artifactType": artifact_type,
        }));
    fs::write(&index_path, serde_json::to_vec_pretty(&index)?)?;
    Ok(desc)
}
