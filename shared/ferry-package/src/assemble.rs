//! The per-package half of an import: turn the collected metadata into named
//! image roots (OCI layout `index.json`, or a docker-archive `manifest.json`),
//! plus the unnamed referrers (artifacts with a `subject`: signatures, SBOMs,
//! attestations) that travel with them.

use std::collections::HashMap;

use ferry_store::descriptor::{
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, MAX_MANIFEST_BYTES,
};
use ferry_store::layout::IndexJson;
use ferry_store::{media, Descriptor, Digest, Reference, Store};
use serde::Deserialize;

use crate::collect::{Collector, StoredFile};
use crate::error::PackageError;

/// One entry of a docker-archive `manifest.json`.
#[derive(Debug, Deserialize)]
struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The roots of a package.
#[derive(Debug, Default)]
pub struct Roots {
    /// Named images: (full reference, top-level descriptor).
    pub named: Vec<(String, Descriptor)>,
    /// Unnamed `index.json` entries whose manifest has a `subject`.
    pub referrers: Vec<Descriptor>,
}

/// Builds the named roots of the whole package: its own (when it is an image
/// layout or archive itself, or holds no image archive), then each image
/// archive's inside it, assembled on its own (a failure names the archive).
/// The same name twice must mean the same image.
pub fn package_roots(collector: &Collector<'_>, store: &Store) -> Result<Roots, PackageError> {
    let own = collector.metadata.contains_key("index.json")
        || collector.metadata.contains_key("manifest.json")
        || collector.nested.is_empty();
    let mut roots = if own {
        named_roots(collector, store)?
    } else {
        Roots::default()
    };
    for (entry, inner) in &collector.nested {
        let inner_roots = named_roots(inner, store).map_err(|e| PackageError::Nested {
            entry: entry.clone(),
            inner: Box::new(e),
        })?;
        for (name, desc) in inner_roots.named {
            match roots.named.iter().find(|(n, _)| *n == name) {
                Some((_, d)) if d.digest == desc.digest => {}
                Some((_, d)) => {
                    return Err(PackageError::Malformed {
                        entry: entry.clone(),
                        why: format!(
                            "it names {name} as {}, another image archive of the package as {}",
                            desc.digest, d.digest
                        ),
                    })
                }
                None => roots.named.push((name, desc)),
            }
        }
        roots.referrers.extend(inner_roots.referrers);
    }
    Ok(roots)
}

/// Builds the named roots of one layout or archive from what the collector saw.
pub fn named_roots(collector: &Collector<'_>, store: &Store) -> Result<Roots, PackageError> {
    if let Some(layout) = collector.metadata.get("oci-layout") {
        serde_json::from_slice::<serde_json::Value>(layout).map_err(|e| {
            PackageError::Malformed {
                entry: "oci-layout".into(),
                why: format!("not JSON: {e}"),
            }
        })?;
    }
    let docker_entries = match collector.metadata.get("manifest.json") {
        Some(bytes) => Some(
            serde_json::from_slice::<Vec<DockerArchiveEntry>>(bytes).map_err(|e| {
                PackageError::Malformed {
                    entry: "manifest.json".into(),
                    why: format!("not a docker-archive manifest: {e}"),
                }
            })?,
        ),
        None => None,
    };
    if let Some(index) = collector.metadata.get("index.json") {
        let index: IndexJson =
            serde_json::from_slice(index).map_err(|e| PackageError::Malformed {
                entry: "index.json".into(),
                why: format!("not an OCI index: {e}"),
            })?;
        return oci_roots(index, docker_entries.as_deref(), collector, store);
    }
    match docker_entries {
        Some(entries) => docker_archive_roots(&entries, collector, store),
        None => Err(PackageError::NotAPackage {
            path: "package".into(),
            why: "it has neither an OCI index.json nor a docker-archive manifest.json, nor image archives inside".into(),
        }),
    }
}

fn normalise(name: &str, entry: &str) -> Result<String, PackageError> {
    name.parse::<Reference>()
        .map(|r| r.to_string())
        .map_err(|e| PackageError::Malformed {
            entry: entry.to_owned(),
            why: e.to_string(),
        })
}

fn oci_roots(
    index: IndexJson,
    docker_entries: Option<&[DockerArchiveEntry]>,
    collector: &Collector<'_>,
    store: &Store,
) -> Result<Roots, PackageError> {
    // Docker 25+ archives: map config digests to RepoTags for entries without full names.
    let mut tags_by_config: HashMap<Digest, Vec<String>> = HashMap::new();
    for e in docker_entries.unwrap_or_default() {
        if let Some(file) = lookup(collector, &e.config) {
            tags_by_config
                .entry(file.digest.clone())
                .or_default()
                .extend(e.repo_tags.clone().unwrap_or_default());
        }
    }
    let mut roots = Roots::default();
    for desc in index.manifests {
        let names: Vec<String> = if let Some(n) = desc.annotations.get(ANNOTATION_CONTAINERD_NAME) {
            vec![normalise(n, "index.json")?]
        } else if let Some(n) = desc
            .annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| Reference::is_full(n))
        {
            vec![normalise(n, "index.json")?]
        } else if desc.media_type == media::OCI_MANIFEST
            || desc.media_type == media::DOCKER_MANIFEST
        {
            let config = manifest_config(store, &desc)?;
            let tags = config
                .and_then(|c| tags_by_config.get(&c).cloned())
                .unwrap_or_default();
            tags.iter()
                .map(|t| normalise(t, "manifest.json"))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        if names.is_empty() {
            if has_subject(store, &desc)? {
                roots.referrers.push(desc);
                continue;
            }
            return Err(PackageError::Unnamed {
                digest: desc.digest.to_string(),
                entry: "index.json".into(),
            });
        }
        for name in names {
            roots.named.push((name, desc.clone()));
        }
    }
    Ok(roots)
}

/// Whether an unnamed entry is a referrer: a manifest or index with a `subject`.
fn has_subject(store: &Store, desc: &Descriptor) -> Result<bool, PackageError> {
    if !media::is_manifest_like(&desc.media_type) || !store.has_blob(&desc.digest, desc.size) {
        return Ok(false);
    }
    let bytes = store.read_small_blob(desc, MAX_MANIFEST_BYTES)?;
    Ok(ferry_store::descriptor::children_of(desc, &bytes)
        .map(|c| c.subject.is_some())
        .unwrap_or(false))
}

fn manifest_config(store: &Store, desc: &Descriptor) -> Result<Option<Digest>, PackageError> {
    if !store.has_blob(&desc.digest, desc.size) {
        return Ok(None); // reported as missing by the graph walk
    }
    let bytes = store.read_small_blob(desc, MAX_MANIFEST_BYTES)?;
    let children = ferry_store::descriptor::children_of(desc, &bytes)
        .map_err(ferry_store::StoreError::from)?;
    Ok(children.descriptors.first().map(|c| c.digest.clone()))
}

fn lookup<'c>(collector: &'c Collector<'_>, path: &str) -> Option<&'c StoredFile> {
    collector.lookup(path)
}

/// Synthesises an OCI manifest per legacy docker-archive image (layers keep
/// their exact bytes; their media type is sniffed from their first bytes).
fn docker_archive_roots(
    entries: &[DockerArchiveEntry],
    collector: &Collector<'_>,
    store: &Store,
) -> Result<Roots, PackageError> {
    let missing = |path: &str| PackageError::Malformed {
        entry: "manifest.json".into(),
        why: format!("it names {path:?}, which is not in the package"),
    };
    let mut roots = Vec::new();
    for entry in entries {
        let config = lookup(collector, &entry.config).ok_or_else(|| missing(&entry.config))?;
        let mut layers = Vec::new();
        for path in &entry.layers {
            let file = lookup(collector, path).ok_or_else(|| missing(path))?;
            let media_type = sniff_layer(store, &file.digest)?;
            layers.push(Descriptor::new(media_type, file.digest.clone(), file.size));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": Descriptor::new(media::OCI_CONFIG, config.digest.clone(), config.size),
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
        let digest = Digest::sha256_of(&bytes);
        store.put_bytes(&digest, &bytes, "synthesised docker-archive manifest")?;
        let desc = Descriptor::new(media::OCI_MANIFEST, digest, bytes.len() as u64);
        let tags = entry.repo_tags.clone().unwrap_or_default();
        if tags.is_empty() {
            return Err(PackageError::Unnamed {
                digest: desc.digest.to_string(),
                entry: "manifest.json".into(),
            });
        }
        for tag in tags {
            roots.push((normalise(&tag, "manifest.json")?, desc.clone()));
        }
    }
    Ok(Roots {
        named: roots,
        referrers: Vec::new(),
    })
}

fn sniff_layer(store: &Store, digest: &Digest) -> Result<&'static str, PackageError> {
    use std::io::Read;
    let path = store.blob_path(digest);
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(&path).map_err(|source| PackageError::Io {
        path: path.clone(),
        source,
    })?;
    let n = f
        .read(&mut head)
        .map_err(|source| PackageError::Io { path, source })?;
    Ok(media::sniff_oci_layer_type(&head[..n]))
}
