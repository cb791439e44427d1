//! Uncompressed layers in a staging store: docker-archives (`docker save`,
//! `podman save`) carry their layers as plain tar, which a registry would store
//! as is. [`uncompressed_layers`] says what that costs; [`compress_layers`]
//! (`ferry-push --compress-layers gzip|zstd`) rewrites each such image with
//! compressed layers: new layer blobs, a new manifest (new digest), the same
//! config (its `diff_ids` are the uncompressed digests, which do not change).

use std::collections::HashMap;
use std::io;

use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::layout::{image_name, named_entry};
use ferry_store::{media, Algorithm, Descriptor, Digest, Store};

use crate::error::PackageError;

/// How `--compress-layers` compresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// gzip (`application/vnd.oci.image.layer.v1.tar+gzip`), readable by every runtime.
    Gzip,
    /// zstd (`…tar+zstd`), smaller and faster; needs containerd 1.5+ / Podman 3+.
    Zstd,
}

/// Uncompressed layers of a store's named images.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Uncompressed {
    /// Images with at least one.
    pub images: usize,
    /// Distinct layers.
    pub layers: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// An image rewritten with compressed layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recompressed {
    /// Its full reference.
    pub name: String,
    /// Its manifest before.
    pub before: Digest,
    /// Its new manifest.
    pub after: Digest,
    /// Bytes of its layers before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

fn is_uncompressed(layer: &Descriptor) -> bool {
    layer.media_type == media::OCI_LAYER_TAR
        || layer.media_type == "application/vnd.docker.image.rootfs.diff.tar"
}

/// Named OCI image manifests of `store` with at least one uncompressed layer:
/// (name, index entry, manifest JSON).
fn candidates(store: &Store) -> Result<Vec<(String, Descriptor, serde_json::Value)>, PackageError> {
    let mut out = Vec::new();
    for entry in store.index_entries()? {
        let Some(name) = image_name(&entry).map(str::to_owned) else {
            continue;
        };
        if entry.media_type != media::OCI_MANIFEST {
            continue;
        }
        let bytes = store.read_small_blob(&entry, MAX_MANIFEST_BYTES)?;
        let manifest: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| PackageError::Malformed {
                entry: format!("manifest {}", entry.digest),
                why: e.to_string(),
            })?;
        if layers_of(&manifest)?.iter().any(is_uncompressed) {
            out.push((name, entry, manifest));
        }
    }
    Ok(out)
}

fn layers_of(manifest: &serde_json::Value) -> Result<Vec<Descriptor>, PackageError> {
    serde_json::from_value(manifest["layers"].clone()).map_err(|e| PackageError::Malformed {
        entry: "manifest".into(),
        why: format!("layers: {e}"),
    })
}

/// What the uncompressed layers of `store`'s named images weigh.
pub fn uncompressed_layers(store: &Store) -> Result<Uncompressed, PackageError> {
    let mut seen: HashMap<Digest, u64> = HashMap::new();
    let mut images = 0;
    for (_, _, manifest) in candidates(store)? {
        images += 1;
        for layer in layers_of(&manifest)?.into_iter().filter(is_uncompressed) {
            seen.insert(layer.digest, layer.size);
        }
    }
    Ok(Uncompressed {
        images,
        layers: seen.len(),
        bytes: seen.values().sum(),
    })
}

/// Rewrites every named image of `store` that has uncompressed layers with
/// `how`-compressed layers (each distinct layer compressed once) and renames
/// it to its new manifest. Already compressed images are left alone, so a
/// rerun does nothing.
pub fn compress_layers(
    store: &Store,
    how: LayerCompression,
) -> Result<Vec<Recompressed>, PackageError> {
    let mut done: HashMap<Digest, Descriptor> = HashMap::new();
    let mut out = Vec::new();
    for (name, entry, mut manifest) in candidates(store)? {
        let mut layers = layers_of(&manifest)?;
        let (mut before, mut after) = (0, 0);
        for layer in layers.iter_mut() {
            before += layer.size;
            if is_uncompressed(layer) {
                let compressed = match done.get(&layer.digest) {
                    Some(d) => d.clone(),
                    None => {
                        let d = compress_blob(store, layer, how)?;
                        done.insert(layer.digest.clone(), d.clone());
                        d
                    }
                };
                *layer = compressed;
            }
            after += layer.size;
        }
        manifest["layers"] = serde_json::to_value(&layers).expect("descriptors serialise");
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let digest = Digest::sha256_of(&bytes);
        store.put_bytes(&digest, &bytes, "manifest with compressed layers")?;
        let desc = Descriptor::new(media::OCI_MANIFEST, digest.clone(), bytes.len() as u64);
        store.upsert_index_entries(&[named_entry(desc, &name)])?;
        out.push(Recompressed {
            name,
            before: entry.digest,
            after: digest,
            bytes_before: before,
            bytes_after: after,
        });
    }
    Ok(out)
}

/// Writes `layer` compressed into a new verified blob; its descriptor.
fn compress_blob(
    store: &Store,
    layer: &Descriptor,
    how: LayerCompression,
) -> Result<Descriptor, PackageError> {
    let path = store.blob_path(&layer.digest);
    let io_error = |source: io::Error| PackageError::Io {
        path: path.clone(),
        source,
    };
    let mut input = std::fs::File::open(&path).map_err(io_error)?;
    let writer = store.new_blob_writer(Algorithm::Sha256)?;
    let (writer, media_type) = match how {
        LayerCompression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(writer, flate2::Compression::default());
            io::copy(&mut input, &mut enc).map_err(io_error)?;
            (enc.finish().map_err(io_error)?, media::OCI_LAYER_GZIP)
        }
        LayerCompression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(writer, 3).map_err(io_error)?;
            io::copy(&mut input, &mut enc).map_err(io_error)?;
            (enc.finish().map_err(io_error)?, media::OCI_LAYER_ZSTD)
        }
    };
    let stored = writer.commit_computed()?;
    Ok(Descriptor::new(media_type, stored.digest, stored.size))
}
