//! The plan: from a source's index entries and a way to load manifests, the
//! images to copy, each with its manifests children-first, its leaf blobs
//! (configs and layers) and the referrers attached to it. Pure: no I/O but the
//! loader callback.
//!
//! Invariants: manifests are listed children before parents (the walk's
//! order), each once per image; a referrer is attached to every image whose
//! graph holds its subject, and its manifests and blobs join that image's;
//! blobs with external `urls` (foreign layers) are not copied.

use std::collections::BTreeMap;

use ferry_store::layout::image_name;
use ferry_store::walk::walk_graph;
use ferry_store::{media, Descriptor, Digest, StoreError};

use crate::referrer::{holds_subject, referrer_of, Referrer};

/// Where an image goes in the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Repository (path below the sink's host, namespace included).
    pub repository: String,
    /// Tag, when the source reference has one.
    pub tag: Option<String>,
    /// The full destination reference, for messages.
    pub display: String,
}

/// One image to copy.
#[derive(Debug, Clone)]
pub struct ImagePlan {
    /// Source reference (the name in the source's index).
    pub source: String,
    /// Where it goes.
    pub dest: Destination,
    /// The manifest or index the name points to.
    pub root: Descriptor,
    /// Manifests and indexes, children first, then its referrers'.
    pub manifests: Vec<Descriptor>,
    /// Configs and layers (its own, then its referrers').
    pub blobs: Vec<Descriptor>,
    /// Artifacts whose subject is in this image's graph.
    pub referrers: Vec<Referrer>,
}

/// An index entry that belongs to no image being copied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unattached {
    /// Its manifest.
    pub digest: Digest,
    /// Why nothing says where it belongs.
    pub reason: String,
}

/// Everything to copy.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Images, in the source's index order.
    pub images: Vec<ImagePlan>,
    /// Unnamed entries left out.
    pub unattached: Vec<Unattached>,
}

/// One leaf blob and the repositories that need it.
#[derive(Debug, Clone)]
pub struct BlobNeed {
    /// The blob.
    pub desc: Descriptor,
    /// Repositories of images still to copy that need it.
    pub needed: Vec<String>,
    /// Repositories of complete images that hold it (mount sources).
    pub held_in: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A name could not be mapped to a destination.
    #[error("image {name}: {reason}")]
    Map {
        /// Source reference.
        name: String,
        /// Why.
        reason: String,
    },
    /// A manifest of an image could not be loaded or parsed.
    #[error("{name}: {problem}")]
    Graph {
        /// The image (or referrer) concerned.
        name: String,
        /// The first problem met.
        problem: StoreError,
    },
}

/// Plans the copy of every named entry of `entries` (with the referrers of
/// the unnamed ones attached). `map` gives a name's destination; `load` a
/// manifest's exact bytes.
pub fn plan(
    entries: &[Descriptor],
    map: impl Fn(&str) -> Result<Destination, String>,
    mut load: impl FnMut(&Descriptor) -> Result<Vec<u8>, StoreError>,
) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    let mut referrers = Vec::new();
    for entry in entries {
        let Some(name) = image_name(entry).map(str::to_owned) else {
            let without_subject = || Unattached {
                digest: entry.digest.clone(),
                reason: "an unnamed index.json entry without a subject".to_owned(),
            };
            if !media::is_manifest_like(&entry.media_type) {
                plan.unattached.push(without_subject());
                continue;
            }
            let bytes = load(entry).map_err(|problem| PlanError::Graph {
                name: format!("unnamed entry {}", entry.digest),
                problem,
            })?;
            match referrer_of(entry, &bytes) {
                Some(r) => referrers.push(r),
                None => plan.unattached.push(without_subject()),
            }
            continue;
        };
        let dest = map(&name).map_err(|reason| PlanError::Map {
            name: name.clone(),
            reason,
        })?;
        let (manifests, blobs) = graph_of(&name, entry, &mut load)?;
        plan.images.push(ImagePlan {
            source: name,
            dest,
            root: entry.clone(),
            manifests,
            blobs,
            referrers: Vec::new(),
        });
    }
    for r in referrers {
        let label = format!("referrer {} of {}", r.root.digest, r.subject);
        let (manifests, blobs) = graph_of(&label, &r.root, &mut load)?;
        let mut attached = false;
        for image in plan.images.iter_mut() {
            if !holds_subject(&image.root, &image.manifests, &r.subject)
                || image
                    .referrers
                    .iter()
                    .any(|x| x.root.digest == r.root.digest)
            {
                continue;
            }
            for m in &manifests {
                if !image.manifests.iter().any(|x| x.digest == m.digest) {
                    image.manifests.push(m.clone());
                }
            }
            for b in &blobs {
                if !image.blobs.iter().any(|x| x.digest == b.digest) {
                    image.blobs.push(b.clone());
                }
            }
            image.referrers.push(r.clone());
            attached = true;
        }
        if !attached {
            plan.unattached.push(Unattached {
                digest: r.root.digest.clone(),
                reason: format!("its subject {} is not an image of the source", r.subject),
            });
        }
    }
    Ok(plan)
}

/// The graph of one root: manifests children-first, and its leaf blobs.
fn graph_of(
    name: &str,
    root: &Descriptor,
    load: &mut impl FnMut(&Descriptor) -> Result<Vec<u8>, StoreError>,
) -> Result<(Vec<Descriptor>, Vec<Descriptor>), PlanError> {
    let mut walk = walk_graph(&[(name.to_owned(), root.clone())], &mut *load);
    if !walk.problems.is_empty() {
        return Err(PlanError::Graph {
            name: name.to_owned(),
            problem: walk.problems.swap_remove(0),
        });
    }
    let (mut manifests, mut blobs) = (Vec::new(), Vec::new());
    for n in walk.nodes {
        if media::is_manifest_like(&n.descriptor.media_type) {
            manifests.push(n.descriptor);
        } else if n.descriptor.urls.is_empty() {
            blobs.push(n.descriptor);
        }
    }
    Ok((manifests, blobs))
}

impl Plan {
    /// Every leaf blob once, with the repositories of images still to copy
    /// that need it and those of complete images that hold it; blobs no image
    /// still needs are left out. `complete[i]` is image `i`'s state.
    pub fn blob_needs(&self, complete: &[bool]) -> Vec<BlobNeed> {
        let mut by_digest: BTreeMap<&Digest, BlobNeed> = BTreeMap::new();
        for (image, done) in self.images.iter().zip(complete) {
            for b in &image.blobs {
                let need = by_digest.entry(&b.digest).or_insert_with(|| BlobNeed {
                    desc: b.clone(),
                    needed: Vec::new(),
                    held_in: Vec::new(),
                });
                let list = if *done {
                    &mut need.held_in
                } else {
                    &mut need.needed
                };
                if !list.contains(&image.dest.repository) {
                    list.push(image.dest.repository.clone());
                }
            }
        }
        by_digest
            .into_values()
            .filter(|n| !n.needed.is_empty())
            .collect()
    }
}
