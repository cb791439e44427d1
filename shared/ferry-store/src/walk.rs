//! Graph walking: from named roots down to every config and layer, children first.

use std::collections::HashSet;

use crate::descriptor::{children_of, Descriptor, MAX_MANIFEST_BYTES};
use crate::digest::Digest;
use crate::error::StoreError;
use crate::layout::Store;
use crate::media;

/// Deepest index nesting accepted (real images use 1 or 2 levels).
pub const MAX_DEPTH: usize = 16;

/// One node of an image graph, with the first parent that reached it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphNode {
    /// The node.
    pub descriptor: Descriptor,
    /// Who references it: the root's name, or the parent manifest's digest.
    pub parent: String,
}

/// Result of a walk: nodes in children-before-parents order (each digest once),
/// and every problem met on the way (the walk keeps going after a problem).
#[derive(Debug, Default)]
pub struct Walk {
    /// The reachable nodes, children before parents.
    pub nodes: Vec<GraphNode>,
    /// Unreadable, malformed, missing or too-deep manifests.
    pub problems: Vec<StoreError>,
}

/// [`walk_graph`] over manifests held in memory (keyed by digest); a manifest
/// absent from `blobs` is reported as missing.
pub fn walk_in_memory(
    roots: &[(String, Descriptor)],
    blobs: &std::collections::HashMap<crate::Digest, Vec<u8>>,
) -> Walk {
    walk_graph(roots, memory_loader(blobs, ""))
}

/// A manifest loader over manifests held in memory (keyed by digest); one
/// that is absent is a [`StoreError::MissingBlob`] whose parent is `parent`.
pub fn memory_loader<'b>(
    blobs: &'b std::collections::HashMap<crate::Digest, Vec<u8>>,
    parent: &'b str,
) -> impl FnMut(&Descriptor) -> Result<Vec<u8>, StoreError> + 'b {
    move |d| {
        blobs
            .get(&d.digest)
            .cloned()
            .ok_or_else(|| StoreError::MissingBlob {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: d.size,
                parent: parent.to_owned(),
            })
    }
}

/// Walks the graphs under `roots` (name, descriptor), reading manifest and index
/// bytes with `load`. Leaves (configs, layers, unknown types) are listed, not read.
pub fn walk_graph<F>(roots: &[(String, Descriptor)], mut load: F) -> Walk
where
    F: FnMut(&Descriptor) -> Result<Vec<u8>, StoreError>,
{
    enum Step {
        Enter(Descriptor, String, usize),
        Exit(Descriptor, String),
    }
    let mut walk = Walk::default();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut stack: Vec<Step> = Vec::new();
    for (name, root) in roots.iter().rev() {
        stack.push(Step::Enter(root.clone(), name.clone(), 0));
    }
    while let Some(step) = stack.pop() {
        match step {
            Step::Exit(descriptor, parent) => walk.nodes.push(GraphNode { descriptor, parent }),
            Step::Enter(desc, parent, depth) => {
                if !seen.insert(desc.digest.clone()) {
                    continue;
                }
                if !media::is_manifest_like(&desc.media_type) {
                    walk.nodes.push(GraphNode {
                        descriptor: desc,
                        parent,
                    });
                    continue;
                }
                if depth >= MAX_DEPTH {
                    walk.problems.push(StoreError::NotALayout {
                        path: parent.into(),
                        why: format!(
                            "{} is nested more than {MAX_DEPTH} indexes deep",
                            desc.digest
                        ),
                    });
                    continue;
                }
                if desc.size > MAX_MANIFEST_BYTES {
                    walk.problems.push(
                        crate::descriptor::ManifestError::TooLarge {
                            digest: desc.digest.clone(),
                            size: desc.size,
                        }
                        .into(),
                    );
                    continue;
                }
                let bytes = match load(&desc) {
                    Ok(b) => b,
                    Err(StoreError::MissingBlob {
                        digest,
                        media_type,
                        size,
                        ..
                    }) => {
                        walk.problems.push(StoreError::MissingBlob {
                            digest,
                            media_type,
                            size,
                            parent,
                        });
                        continue;
                    }
                    Err(e) => {
                        walk.problems.push(e);
                        continue;
                    }
                };
                let children = match children_of(&desc, &bytes) {
                    Ok(c) => c,
                    Err(e) => {
                        walk.problems.push(e.into());
                        continue;
                    }
                };
                let me = desc.digest.to_string();
                stack.push(Step::Exit(desc, parent));
                for child in children.descriptors.into_iter().rev() {
                    stack.push(Step::Enter(child, me.clone(), depth + 1));
                }
            }
        }
    }
    walk
}

impl Store {
    /// Walks every image named in `index.json` and checks that each leaf blob
    /// is present with the right size. Problems are collected, not fatal.
    pub fn walk_index(&self) -> Result<Walk, StoreError> {
        let roots: Vec<(String, Descriptor)> = self
            .index_entries()?
            .into_iter()
            .map(|d| {
                (
                    crate::layout::image_name(&d)
                        .unwrap_or("index.json")
                        .to_owned(),
                    d,
                )
            })
            .collect();
        let mut walk = walk_graph(&roots, |d| self.read_small_blob(d, MAX_MANIFEST_BYTES));
        for node in &walk.nodes {
            let d = &node.descriptor;
            if !media::is_manifest_like(&d.media_type)
                && d.urls.is_empty()
                && !self.has_blob(&d.digest, d.size)
            {
                walk.problems.push(StoreError::MissingBlob {
                    digest: d.digest.clone(),
                    media_type: d.media_type.clone(),
                    size: d.size,
                    parent: node.parent.clone(),
                });
            }
        }
        Ok(walk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn manifest(config: &Descriptor, layers: &[&Descriptor]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": config, "layers": layers,
        }))
        .unwrap()
    }

    #[test]
    fn children_come_before_parents_and_shared_blobs_once() {
        let cfg = Descriptor::new(media::OCI_CONFIG, Digest::sha256_of(b"c"), 1);
        let layer = Descriptor::new(media::OCI_LAYER_GZIP, Digest::sha256_of(b"l"), 1);
        let m1 = manifest(&cfg, &[&layer]);
        let m2 = manifest(&cfg, &[&layer, &layer]);
        let d1 = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(&m1), m1.len() as u64);
        let d2 = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(&m2), m2.len() as u64);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [d1, d2],
        }))
        .unwrap();
        let di = Descriptor::new(
            media::OCI_INDEX,
            Digest::sha256_of(&index),
            index.len() as u64,
        );
        let blobs: HashMap<Digest, Vec<u8>> = [
            (d1.digest.clone(), m1),
            (d2.digest.clone(), m2),
            (di.digest.clone(), index),
        ]
        .into();
        let walk = walk_graph(&[("gcr.io/a/b:1".into(), di.clone())], |d| {
            Ok(blobs[&d.digest].clone())
        });
        assert!(walk.problems.is_empty());
        let order: Vec<_> = walk
            .nodes
            .iter()
            .map(|n| n.descriptor.digest.clone())
            .collect();
        assert_eq!(
            order,
            vec![cfg.digest, layer.digest, d1.digest, d2.digest, di.digest]
        );
    }

    #[test]
    fn missing_manifest_is_reported_with_its_parent() {
        let d = Descriptor::new(media::OCI_MANIFEST, Digest::sha256_of(b"m"), 1);
        let walk = walk_graph(&[("gcr.io/a/b:1".into(), d.clone())], |d| {
            Err(StoreError::MissingBlob {
                digest: d.digest.clone(),
                media_type: d.media_type.clone(),
                size: d.size,
                parent: String::new(),
            })
        });
        assert_eq!(walk.problems.len(), 1);
        let msg = walk.problems[0].to_string();
        assert!(
            msg.contains("gcr.io/a/b:1") && msg.contains(&d.digest.to_string()),
            "{msg}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        // 10,000 nested indexes: must be refused, not overflow the stack.
        let mut blobs: HashMap<Digest, Vec<u8>> = HashMap::new();
        let leaf = Descriptor::new(media::OCI_CONFIG, Digest::sha256_of(b"x"), 1);
        let mut child = leaf;
        for _ in 0..10_000 {
            let body = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [child],
            }))
            .unwrap();
            let d = Descriptor::new(
                media::OCI_INDEX,
                Digest::sha256_of(&body),
                body.len() as u64,
            );
            blobs.insert(d.digest.clone(), body);
            child = d;
        }
        let walk = walk_graph(&[("deep".into(), child)], |d| Ok(blobs[&d.digest].clone()));
        assert_eq!(walk.problems.len(), 1);
        assert!(walk.problems[0].to_string().contains("nested"));
    }
}
