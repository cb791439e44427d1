//! Attaching signatures, SBOMs and attestations to images of a generated
//! layout, the two ways tools store them: OCI 1.1 referrers, as
//! `oras copy -r --to-oci-layout` writes them (an artifact manifest whose
//! `subject` is the image, listed in `index.json` without a name), and
//! cosign's tag scheme (an image manifest tagged `sha256-<hex>.sig`, `.att` or
//! `.sbom` in the image's repository, named like any image).

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
    let mut entry = descriptor_entry(&desc);
    entry["artifactType"] = artifact_type.into();
    append_index_entry(dir, entry)?;
    Ok(desc)
}

/// Writes a cosign-style signature (`suffix` "sig"), attestation ("att") or SBOM
/// ("sbom") for the image `reference` whose manifest is `subject`: an OCI image
/// manifest with one layer holding `payload`, named in `index.json` as
/// `REPOSITORY:sha256-<hex>.<suffix>` (how `cosign sign` stores it in a
/// registry). Returns the full reference and the manifest's descriptor.
pub fn add_cosign_tag(
    dir: &Path,
    reference: &str,
    subject: &Descriptor,
    suffix: &str,
    payload: &[u8],
) -> anyhow::Result<(String, Descriptor)> {
    let layer_type = match suffix {
        "sig" => "application/vnd.dev.cosign.simplesigning.v1+json",
        "att" => "application/vnd.dsse.envelope.v1+json",
        _ => "text/spdx+json",
    };
    let config = write_blob(
        dir,
        media::OCI_CONFIG,
        br#"{"architecture":"","os":"","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#,
    )?;
    let layer = write_blob(dir, layer_type, payload)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest.to_string(), "size": config.size},
        "layers": [{
            "mediaType": layer.media_type, "digest": layer.digest.to_string(), "size": layer.size,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDfakebutwellformedbase64=="}
        }]
    });
    let desc = write_blob(dir, media::OCI_MANIFEST, &serde_json::to_vec(&manifest)?)?;
    let repository = reference
        .rsplit_once(':')
        .filter(|(repo, _)| !repo.ends_with('/') && !repo.contains('@'))
        .map_or(reference, |(repo, _)| repo);
    let tagged = format!("{repository}:sha256-{}.{suffix}", subject.digest.hex());
    let mut entry = descriptor_entry(&desc);
    entry["annotations"] = serde_json::json!({
        "org.opencontainers.image.ref.name": tagged,
        "io.containerd.image.name": tagged,
    });
    append_index_entry(dir, entry)?;
    Ok((tagged, desc))
}

/// The `index.json` entry for `desc`: its media type, digest and size.
fn descriptor_entry(desc: &Descriptor) -> serde_json::Value {
    serde_json::json!({
        "mediaType": desc.media_type,
        "digest": desc.digest.to_string(),
        "size": desc.size,
    })
}

/// Appends `entry` to the `manifests` array of the layout's `index.json` at
/// `dir` (read, extended, written back pretty-printed).
fn append_index_entry(dir: &Path, entry: serde_json::Value) -> anyhow::Result<()> {
    let index_path = dir.join("index.json");
    let mut index: serde_json::Value = serde_json::from_slice(
        &fs::read(&index_path).with_context(|| format!("reading {}", index_path.display()))?,
    )?;
    index["manifests"]
        .as_array_mut()
        .context("index.json has no manifests array")?
        .push(entry);
    fs::write(&index_path, serde_json::to_vec_pretty(&index)?)?;
    Ok(())
}
