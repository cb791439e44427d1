//! `--from`: local sources into the cache. A directory holding an OCI image
//! layout (a ferry store, `skopeo copy oci:`) is copied on the engine
//! ([`StoreSource`] into the cache's [`ferry_copy::StoreSink`]); anything
//! else `ferry-export` reads (oci-archive, docker-archive, packages, in any
//! compression) goes through the package importer into the cache.
//! Images must be named by full references (`HOST/REPOSITORY:TAG`).

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use ferry_copy::plan::plan;
use ferry_copy::StoreSource;
use ferry_package::import::{import_package, ImportOptions};
use ferry_package::PresentCheck;
use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::layout::{image_name, named_entry};
use ferry_store::{media, Store};

use crate::error::PackError;
use crate::gather::{
    cache_destination, plain, pull, Gathered, GatheredImage, PackEvent, PackOptions,
};
use crate::platform::filter_index;

/// Gathers every image of the local source `path` into `cache`.
pub fn gather_local(
    cache: &Store,
    path: &Path,
    options: &PackOptions,
    progress: Arc<AtomicU64>,
    events: &(dyn Fn(PackEvent) + Sync),
) -> Result<Gathered, PackError> {
    let local = |why: String| PackError::Local {
        path: path.to_path_buf(),
        why,
    };
    let mut gathered = if path.is_dir() && path.join("oci-layout").is_file() {
        let layout = Store::open_read_only(path)?;
        let source = StoreSource::new(&layout);
        let plan = source
            .plan(cache_destination)
            .map_err(|e| local(e.to_string()))?;
        if plan.images.is_empty() {
            return Err(local("the layout names no image".into()));
        }
        let mut g = pull(cache, &source, &plan, options.jobs, events)?;
        g.images = plan
            .images
            .iter()
            .map(|i| image_of(path, &i.source, &i.root))
            .collect();
        g
    } else {
        let report = import_package(
            path,
            cache,
            &ImportOptions {
                progress,
                threads: options.jobs.max(1) as u32,
                present_check: PresentCheck::default(),
            },
        )
        .map_err(|source| PackError::Import {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        for i in &report.images {
            cache_destination(&i.name).map_err(local)?;
        }
        // Referrers the archive carried: the cache's unnamed entries whose
        // subject is in one of its images.
        let mut entries: Vec<_> = report
            .images
            .iter()
            .map(|i| named_entry(plain(&i.descriptor), &i.name))
            .collect();
        entries.extend(
            cache
                .index_entries()?
                .into_iter()
                .filter(|e| image_name(e).is_none()),
        );
        let attached = plan(&entries, cache_destination, |d| {
            cache.read_small_blob(d, MAX_MANIFEST_BYTES)
        })
        .map_err(|e| local(e.to_string()))?;
        let mut referrers = Vec::new();
        for r in attached.images.iter().flat_map(|i| &i.referrers) {
            if !referrers
                .iter()
                .any(|x: &ferry_store::Descriptor| x.digest == r.root.digest)
            {
                referrers.push(plain(&r.root));
            }
        }
        Gathered {
            images: report
                .images
                .iter()
                .map(|i| image_of(path, &i.name, &i.descriptor))
                .collect(),
            referrers,
            blobs_pulled: report.counts.blobs_written,
            blobs_cached: report.counts.blobs_present,
            bytes_pulled: report.counts.bytes_written,
        }
    };
    if !options.platforms.is_empty() {
        for image in &mut gathered.images {
            if media::kind_of(&image.root.media_type) != media::Kind::Index {
                continue;
            }
            let bytes = cache.read_small_blob(&image.root, MAX_MANIFEST_BYTES)?;
            match filter_index(&image.root, &bytes, &options.platforms) {
                Ok(None) => {}
                Ok(Some(f)) => {
                    cache.put_bytes(&f.descriptor.digest, &f.bytes, "filtered index")?;
                    events(PackEvent::Filtered {
                        name: image.name.clone(),
                        from: image.source_digest.clone(),
                        to: f.descriptor.digest.clone(),
                        kept: f.kept.clone(),
                        of: f.of,
                    });
                    image.root = f.descriptor;
                    image.platforms = f.kept;
                }
                Err(available) => {
                    return Err(PackError::NoPlatform {
                        reference: image.requested.clone(),
                        digest: image.source_digest.clone(),
                        wanted: options
                            .platforms
                            .iter()
                            .map(|p| p.to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        available: available.join(", "),
                    })
                }
            }
        }
    }
    Ok(gathered)
}

fn image_of(path: &Path, name: &str, root: &ferry_store::Descriptor) -> GatheredImage {
    GatheredImage {
        name: name.to_owned(),
        root: plain(root),
        requested: format!("{}: {name}", path.display()),
        source_digest: root.digest.clone(),
        platforms: Vec::new(),
    }
}
