//! Committing one image once its blobs are in the registry: its manifests by
//! digest, children first (each skipped when the registry already has it),
//! then its tag (the commit point: a client that sees the tag finds the whole
//! image), then its referrers listed under their subjects' fallback tags.
//! Shared by the store push and the streaming push, which differ only in
//! where a manifest's exact bytes come from.
//!
//! Invariants: manifests are sent as their exact bytes; nothing is sent on a
//! dry run (the same questions are asked and counted).

use ferry_store::Descriptor;

use crate::client::{Access, Client};
use crate::error::RegistryError;
use crate::referrers::{list_under_fallback_tags, Referrer};

/// One image to commit.
pub struct ImageCommit<'a> {
    /// Package reference (for error messages).
    pub source: &'a str,
    /// Target reference (for error messages).
    pub target: &'a str,
    /// Repository in the registry.
    pub repository: &'a str,
    /// Tag to set, if the reference has one.
    pub tag: Option<&'a str>,
    /// The manifest or index the tag points to.
    pub root: &'a Descriptor,
    /// Its manifests and indexes, children first (referrers' included).
    pub manifests: &'a [Descriptor],
    /// Artifacts whose subject is in this image's graph.
    pub referrers: &'a [Referrer],
}

/// What committing an image sent (or would send, on a dry run).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Manifests pushed by digest.
    pub manifests: u64,
    /// Tags set (the image's and fallback tags).
    pub tags: u64,
}

/// Commits `image`: `bytes_of` gives a manifest's exact bytes; registry
/// failures become `E` through `registry_error(context, error)`, the context
/// naming the image and the manifest or tag.
pub fn commit_image<E>(
    client: &Client,
    image: &ImageCommit<'_>,
    dry_run: bool,
    bytes_of: impl Fn(&Descriptor) -> Result<Vec<u8>, E>,
    registry_error: impl Fn(String, RegistryError) -> E,
) -> Result<Committed, E> {
    let fail = |what: String| {
        let context = format!("image {} → {}: {what}", image.source, image.target);
        let registry_error = &registry_error;
        move |e| registry_error(context, e)
    };
    let repo = image.repository;
    let mut done = Committed::default();
    for m in image.manifests {
        let digest = m.digest.to_string();
        let present = client
            .manifest_head(repo, &digest, Access::Push)
            .map_err(fail(format!("manifest {digest}")))?;
        if present.is_some() {
            continue;
        }
        done.manifests += 1;
        if !dry_run {
            let bytes = bytes_of(m)?;
            client
                .put_manifest(repo, &digest, &m.media_type, &bytes)
                .map_err(fail(format!("manifest {digest}")))?;
        }
    }
    if let Some(tag) = image.tag {
        let current = client
            .manifest_head(repo, tag, Access::Push)
            .map_err(fail(format!("tag {tag}")))?;
        if current.as_ref().map(|c| &c.digest) != Some(&image.root.digest) {
            done.tags += 1;
            if !dry_run {
                let bytes = bytes_of(image.root)?;
                client
                    .put_manifest(repo, tag, &image.root.media_type, &bytes)
                    .map_err(fail(format!("tag {tag}")))?;
            }
        }
    }
    done.tags += list_under_fallback_tags(client, repo, image.referrers, dry_run)
        .map_err(|(tag, e)| fail(format!("referrers tag {tag}"))(e))?;
    Ok(done)
}
