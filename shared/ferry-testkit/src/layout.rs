//! Reading a generated layout back: graph walk, blob classification and a
//! strict verifier used by tests (and by callers checking their own output).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context as _};
use ferry_store::descriptor::children_of;
use ferry_store::media::{self, Kind};
use ferry_store::{Algorithm, Descriptor, Digest};
use serde::Deserialize;

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<Descriptor>,
}

/// The top-level entries of `dir/index.json`.
pub fn read_index(dir: &Path) -> anyhow::Result<Vec<Descriptor>> {
    let path = dir.join("index.json");
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let index: IndexJson =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    Ok(index.manifests)
}

/// Path of a blob in a layout.
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm().name())
        .join(digest.hex())
}

/// Reads a manifest or index blob and lists its children.
pub(crate) fn read_children(dir: &Path, desc: &Descriptor) -> anyhow::Result<Vec<Descriptor>> {
    let path = blob_path(dir, &desc.digest);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(children_of(desc, &bytes)?.descriptors)
}

/// Blobs of a layout split by role, each list sorted by digest.
pub(crate) struct Classified {
    /// Indexes, manifests and configs.
    pub(crate) metadata: Vec<Digest>,
    /// Layers, plus any blob the graph does not reach.
    pub(crate) layers: Vec<Digest>,
}

/// Walks the graph from `index.json` and splits every blob file into metadata and layers.
pub(crate) fn classify(dir: &Path) -> anyhow::Result<Classified> {
    let mut metadata = BTreeSet::new();
    let mut stack = read_index(dir)?;
    while let Some(desc) = stack.pop() {
        match media::kind_of(&desc.media_type) {
            Kind::Index => {
                metadata.insert(desc.digest.clone());
                stack.extend(read_children(dir, &desc)?);
            }
            Kind::Manifest => {
                metadata.insert(desc.digest.clone());
                let children = read_children(dir, &desc)?;
                if let Some(config) = children.first() {
                    metadata.insert(config.digest.clone());
                }
            }
            Kind::Blob => {}
        }
    }
    let mut layers = Vec::new();
    for d in list_blobs(dir)? {
        if !metadata.contains(&d) {
            layers.push(d);
        }
    }
    Ok(Classified {
        metadata: metadata.into_iter().collect(),
        layers,
    })
}

/// Every file under `blobs/sha256/`, sorted; fails on a name that is not a digest.
pub(crate) fn list_blobs(dir: &Path) -> anyhow::Result<Vec<Digest>> {
    let blobs = dir.join("blobs").join("sha256");
    let mut out = Vec::new();
    for entry in fs::read_dir(&blobs).with_context(|| format!("listing {}", blobs.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        let digest = Digest::new(Algorithm::Sha256, &name).with_context(|| {
            format!(
                "{}: blob file name {name:?} is not a sha256 digest",
                blobs.display()
            )
        })?;
        out.push(digest);
    }
    out.sort();
    Ok(out)
}

/// sha256 and size of a file, streamed.
pub fn hash_file(path: &Path) -> anyhow::Result<(Digest, u64)> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut w = crate::tario::HashWriter::new(io::sink());
    io::copy(&mut file, &mut w)?;
    let (_, digest, size) = w.finish();
    Ok((digest, size))
}

/// Summary of a verified layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSummary {
    /// Number of blob files.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Reference (`io.containerd.image.name`) → top-level digest.
    pub references: BTreeMap<String, Digest>,
}

/// Strictly checks an OCI layout: `oci-layout` version, every blob file's sha256
/// equals its name, every descriptor reachable from `index.json` names a present
/// blob of exactly that size, manifests parse and agree with their media type.
pub fn verify_layout(dir: &Path) -> anyhow::Result<LayoutSummary> {
    let layout: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("oci-layout"))?)?;
    ensure!(
        layout["imageLayoutVersion"] == "1.0.0",
        "bad oci-layout: {layout}"
    );
    let mut sizes = BTreeMap::new();
    for digest in list_blobs(dir)? {
        let (actual, size) = hash_file(&blob_path(dir, &digest))?;
        ensure!(
            actual == digest,
            "blob {digest} holds content with digest {actual}"
        );
        sizes.insert(digest, size);
    }
    let mut references = BTreeMap::new();
    let index = read_index(dir)?;
    for desc in &index {
        let name = desc
            .annotations
            .get(ferry_store::descriptor::ANNOTATION_CONTAINERD_NAME)
            .with_context(|| format!("index.json entry {} has no name", desc.digest))?;
        ensure!(
            desc.annotations
                .get(ferry_store::descriptor::ANNOTATION_REF_NAME)
                == Some(name),
            "index.json entry {} has mismatched name annotations",
            desc.digest
        );
        references.insert(name.clone(), desc.digest.clone());
    }
    let mut stack = index;
    while let Some(desc) = stack.pop() {
        match sizes.get(&desc.digest) {
            None => bail!(
                "{} ({}) is referenced but missing",
                desc.digest,
                desc.media_type
            ),
            Some(&size) if size != desc.size => {
                bail!(
                    "{}: descriptor size {} but blob has {size} bytes",
                    desc.digest,
                    desc.size
                )
            }
            Some(_) => {}
        }
        if media::is_manifest_like(&desc.media_type) {
            stack.extend(read_children(dir, &desc)?);
        }
    }
    Ok(LayoutSummary {
        blobs: sizes.len(),
        bytes: sizes.values().sum(),
        references,
    })
}
