//! Gathering images from registries into the cache store: every reference
//! resolved once, indexes filtered to `--platform`, every manifest of every
//! graph fetched (verified) into the cache, referrers found, then the one
//! copy engine pulls the blobs the cache lacks (in parallel on `--jobs`)
//! into a [`StoreSink`]; what the cache holds is never fetched again.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Read;
use std::sync::Mutex;

use ferry_copy::executor::{copy_in_order, BlobOrder, CopyOptions};
use ferry_copy::plan::{plan, Destination, Plan};
use ferry_copy::pool::parallel;
use ferry_copy::referrer::fallback_tag;
use ferry_copy::source::Source;
use ferry_copy::{CopyError, CopyEvent, StoreSink};
use ferry_package::pack::{PackImage, PackReferrer};
use ferry_registry::source::{Fetched, Place, RegistrySource};
use ferry_registry::RegistryError;
use ferry_store::descriptor::{children_of, MAX_MANIFEST_BYTES};
use ferry_store::layout::named_entry;
use ferry_store::{media, Descriptor, Digest, Reference, Store, StoreError};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_package::pack::Arrival;

use crate::error::PackError;
use crate::platform::{filter_index, PlatformSpec};
use crate::request::Request;

/// How to gather.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// `--platform`: empty keeps indexes whole.
    pub platforms: Vec<PlatformSpec>,
    /// `--referrers`: bring signatures, SBOMs and attestations.
    pub referrers: bool,
    /// `--jobs`: concurrent transfers.
    pub jobs: usize,
}

/// One image ready for the package writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatheredImage {
    /// Full reference written into the package's `index.json`.
    pub name: String,
    /// The manifest or index as held in the cache (media type, digest, size).
    pub root: Descriptor,
    /// What the user asked for, verbatim.
    pub requested: String,
    /// The digest at the source (differs from `root`'s only after `--platform`).
    pub source_digest: Digest,
    /// Platforms kept; empty = the index was kept whole (or a single manifest).
    pub platforms: Vec<String>,
}

/// Everything gathered: images, referrers, and what was pulled.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Gathered {
    /// Images, in the order asked.
    pub images: Vec<GatheredImage>,
    /// Referrer manifests (with a `subject` in some image), each once.
    pub referrers: Vec<Descriptor>,
    /// Blobs fetched in this run.
    pub blobs_pulled: u64,
    /// Blobs the cache already held.
    pub blobs_cached: u64,
    /// Bytes fetched in this run.
    pub bytes_pulled: u64,
}

impl Gathered {
    /// The package writer's inputs: images and referrers, as gathered.
    pub fn pack_inputs(&self) -> (Vec<PackImage>, Vec<PackReferrer>) {
        let images = self
            .images
            .iter()
            .map(|i| PackImage {
                name: i.name.clone(),
                root: i.root.clone(),
                requested: i.requested.clone(),
                source_digest: i.source_digest.clone(),
                platforms: i.platforms.clone(),
            })
            .collect();
        let referrers = self
            .referrers
            .iter()
            .map(|r| PackReferrer { root: r.clone() })
            .collect();
        (images, referrers)
    }

    /// Adds `other`'s images and referrers and counts (images of the same name once).
    pub fn merge(&mut self, other: Gathered) {
        for image in other.images {
            if !self.images.iter().any(|i| i.name == image.name) {
                self.images.push(image);
            }
        }
        for r in other.referrers {
            if !self.referrers.iter().any(|x| x.digest == r.digest) {
                self.referrers.push(r);
            }
        }
        self.blobs_pulled += other.blobs_pulled;
        self.blobs_cached += other.blobs_cached;
        self.bytes_pulled += other.bytes_pulled;
    }
}

/// What happens while gathering, for progress output (`--json` prints them).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PackEvent {
    /// A reference was resolved.
    Resolved {
        /// What was asked.
        requested: String,
        /// Its digest at the source.
        digest: Digest,
    },
    /// `--platform` kept part of an index: the packaged index is a new one.
    Filtered {
        /// The image.
        name: String,
        /// The source's index.
        from: Digest,
        /// The packaged one.
        to: Digest,
        /// Platforms kept.
        kept: Vec<String>,
        /// Manifests of the source index.
        of: usize,
    },
    /// A single manifest whose config says another platform than `--platform`.
    PlatformMismatch {
        /// The image.
        name: String,
        /// What its config says.
        has: String,
    },
    /// Referrers found for an image.
    Referrers {
        /// The image.
        name: String,
        /// Referrer manifests (API or fallback tag).
        artifacts: usize,
        /// Cosign-style tags (`.sig`, `.att`, `.sbom`).
        tags: usize,
        /// `api` or `fallback-tag`.
        via: String,
    },
    /// What the copy into the cache has to fetch (sent before it starts).
    Planned {
        /// Blobs the cache lacks.
        blobs: u64,
        /// Their bytes.
        bytes: u64,
        /// Blobs the cache already holds.
        cached: u64,
    },
    /// The copy engine's own events (blobs pulled or found in the cache, images complete).
    #[serde(untagged)]
    Copy(CopyEvent),
}

/// The name an image gets: `HOST/REPO:TAG`, or `HOST/REPO@DIGEST` by digest.
pub fn image_name(reference: &Reference, digest: &Digest) -> String {
    match &reference.tag {
        Some(tag) if reference.digest.is_none() => {
            format!("{}/{}:{tag}", reference.host, reference.repository)
        }
        _ => format!("{}/{}@{digest}", reference.host, reference.repository),
    }
}

/// A descriptor reduced to media type, digest and size.
pub fn plain(d: &Descriptor) -> Descriptor {
    Descriptor::new(d.media_type.clone(), d.digest.clone(), d.size)
}

/// How a name maps into the cache: repository `HOST/PATH`, the tag kept.
pub fn cache_destination(name: &str) -> Result<Destination, String> {
    let r: Reference = name.parse().map_err(|e| format!("{e}"))?;
    if !Reference::is_full(name) {
        return Err(format!(
            "{name:?} is not a full reference (HOST/REPOSITORY:TAG): name the image in full"
        ));
    }
    Ok(Destination {
        display: name.to_owned(),
        repository: format!("{}/{}", r.host, r.repository),
        tag: r.tag,
    })
}

/// Manifests come from the cache (every one is there once gathered); blobs
/// from the registries.
struct CacheFirst<'a> {
    cache: &'a Store,
    registries: &'a RegistrySource,
}

impl Source for CacheFirst<'_> {
    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, CopyError> {
        match self.cache.read_small_blob(desc, MAX_MANIFEST_BYTES) {
            Ok(bytes) => Ok(bytes),
            Err(StoreError::MissingBlob { .. }) => self.registries.manifest(desc),
            Err(e) => Err(e.into()),
        }
    }

    fn open_blob(&self, desc: &Descriptor, offset: u64) -> std::io::Result<Box<dyn Read + Send>> {
        self.registries.open_blob(desc, offset)
    }

    fn checks_blobs(&self) -> bool {
        self.registries.checks_blobs()
    }
}

/// A manifest from the cache, else fetched by digest from `place` (checked
/// against the digest and the descriptor's size) and kept in the cache.
fn manifest_into_cache(
    cache: &Store,
    registries: &RegistrySource,
    desc: &Descriptor,
    place: &Place,
    what: &str,
) -> Result<Vec<u8>, PackError> {
    match cache.read_small_blob(desc, MAX_MANIFEST_BYTES) {
        Ok(bytes) => return Ok(bytes),
        Err(StoreError::MissingBlob { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if desc.size > MAX_MANIFEST_BYTES {
        return Err(PackError::Registry {
            reference: what.to_owned(),
            source: Box::new(RegistryError::ManifestTooLarge {
                what: format!("{}/{}@{}", place.host, place.repository, desc.digest),
                size: desc.size,
            }),
        });
    }
    let fetched = registries
        .fetch_manifest(place, &desc.digest.to_string())
        .map_err(|source| PackError::Registry {
            reference: what.to_owned(),
            source: Box::new(source),
        })?
        .ok_or_else(|| {
            PackError::NotFound(vec![format!(
                "{}/{}@{} (in {what})",
                place.host, place.repository, desc.digest
            )])
        })?;
    if fetched.bytes.len() as u64 != desc.size {
        return Err(PackError::Manifest {
            what: format!("{what}: manifest {}", desc.digest),
            why: format!(
                "the registry served {} bytes, its descriptor says {}",
                fetched.bytes.len(),
                desc.size
            ),
        });
    }
    cache.put_bytes(
        &desc.digest,
        &fetched.bytes,
        &format!("manifest {}", desc.digest),
    )?;
    Ok(fetched.bytes)
}

/// Walks a graph from `root` (held at `place`), fetching every manifest into
/// the cache and telling the source where every node can be read; returns
/// the manifests (root included).
fn fetch_graph(
    cache: &Store,
    registries: &RegistrySource,
    root: &Descriptor,
    place: &Place,
    what: &str,
) -> Result<Vec<Descriptor>, PackError> {
    let mut stack = vec![root.clone()];
    let mut seen = HashSet::new();
    let mut manifests = Vec::new();
    while let Some(d) = stack.pop() {
        if !seen.insert(d.digest.clone()) {
            continue;
        }
        registries.locate(&d.digest, place);
        if !media::is_manifest_like(&d.media_type) {
            continue;
        }
        let bytes = manifest_into_cache(cache, registries, &d, place, what)?;
        let children = children_of(&d, &bytes).map_err(|e| PackError::Manifest {
            what: what.to_owned(),
            why: e.to_string(),
        })?;
        manifests.push(d);
        stack.extend(children.descriptors);
    }
    Ok(manifests)
}

/// A referrer manifest found for an image: where it is, and for messages what it refers to.
type ReferrerRoot = (Descriptor, Place, String);

/// One resolved request.
struct Resolved {
    request: Request,
    fetched: Fetched,
}

/// Resolves every request once, in parallel; every missing one is named.
fn resolve_all(
    registries: &RegistrySource,
    requests: &[Request],
    jobs: usize,
    events: &(dyn Fn(PackEvent) + Sync),
) -> Result<Vec<Resolved>, PackError> {
    let answers = parallel(requests, jobs.max(1), |r| {
        Ok::<_, std::convert::Infallible>(registries.resolve(&r.reference))
    })
    .unwrap_or_else(|never| match never {});
    let mut missing = Vec::new();
    let mut resolved = Vec::new();
    for (request, answer) in requests.iter().zip(answers) {
        match answer {
            Ok(Some(fetched)) => {
                events(PackEvent::Resolved {
                    requested: request.requested.clone(),
                    digest: fetched.descriptor.digest.clone(),
                });
                resolved.push(Resolved {
                    request: request.clone(),
                    fetched,
                });
            }
            Ok(None) => missing.push(request.requested.clone()),
            Err(source) => {
                return Err(PackError::Registry {
                    reference: request.requested.clone(),
                    source: Box::new(source),
                })
            }
        }
    }
    if !missing.is_empty() {
        return Err(PackError::NotFound(missing));
    }
    Ok(resolved)
}

/// An image being gathered, with where it lives.
struct Pending {
    image: GatheredImage,
    place: Place,
    /// Whether `--platform` replaced its index.
    filtered: bool,
}

/// Gathers `requests` from the registries into `cache`: see the module doc.
pub fn gather_registries(
    cache: &Store,
    registries: &RegistrySource,
    requests: &[Request],
    options: &PackOptions,
    events: &(dyn Fn(PackEvent) + Sync),
) -> Result<Gathered, PackError> {
    gather_registries_alongside(cache, registries, requests, options, events, |_, _| ())
        .map(|(g, ())| g)
}

/// [`gather_registries`], running `alongside` on another thread from the
/// moment every manifest is in the cache and the images are known (its
/// [`Gathered`] has the images and referrers, not yet the counts) while the
/// blobs are pulled in the plan's order (images sorted by name, as the
/// package writer reads them); [`Arrivals::wait_for`] tells it when each blob
/// has landed. ferry-pack writes the package there, so pulling and writing
/// overlap.
pub fn gather_registries_alongside<T: Send>(
    cache: &Store,
    registries: &RegistrySource,
    requests: &[Request],
    options: &PackOptions,
    events: &(dyn Fn(PackEvent) + Sync),
    alongside: impl FnOnce(&Gathered, &Arrivals<'_>) -> T + Send,
) -> Result<(Gathered, T), PackError> {
    let mut seen = BTreeSet::new();
    let requests: Vec<Request> = requests
        .iter()
        .filter(|r| seen.insert(r.reference.to_string()))
        .cloned()
        .collect();
    let resolved = resolve_all(registries, &requests, options.jobs, events)?;
    let mut pending = Vec::new();
    for Resolved { request, fetched } in resolved {
        let r = &request.reference;
        let place = Place {
            host: r.host.clone(),
            repository: r.repository.clone(),
        };
        let source_digest = fetched.descriptor.digest.clone();
        let name = image_name(r, &source_digest);
        cache.put_bytes(
            &source_digest,
            &fetched.bytes,
            &format!("manifest of {name}"),
        )?;
        let mut root = fetched.descriptor.clone();
        let mut platforms = Vec::new();
        let mut filtered = false;
        if !options.platforms.is_empty() && media::kind_of(&root.media_type) == media::Kind::Index {
            match filter_index(&root, &fetched.bytes, &options.platforms) {
                Ok(None) => {}
                Ok(Some(f)) => {
                    cache.put_bytes(
                        &f.descriptor.digest,
                        &f.bytes,
                        &format!("filtered index of {name}"),
                    )?;
                    events(PackEvent::Filtered {
                        name: name.clone(),
                        from: source_digest.clone(),
                        to: f.descriptor.digest.clone(),
                        kept: f.kept.clone(),
                        of: f.of,
                    });
                    root = f.descriptor;
                    platforms = f.kept;
                    filtered = true;
                }
                Err(available) => {
                    return Err(PackError::NoPlatform {
                        reference: request.requested.clone(),
                        digest: source_digest,
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
        pending.push(Pending {
            image: GatheredImage {
                name,
                root,
                requested: request.requested.clone(),
                source_digest,
                platforms,
            },
            place,
            filtered,
        });
    }

    let jobs = options.jobs.max(1);
    let graphs = parallel(&pending, jobs, |p| {
        fetch_graph(
            cache,
            registries,
            &p.image.root,
            &p.place,
            &p.image.requested,
        )
    })?;

    let mut referrer_roots: Vec<ReferrerRoot> = Vec::new();
    if options.referrers {
        let found = parallel(
            &pending.iter().zip(&graphs).collect::<Vec<_>>(),
            jobs,
            |(p, manifests)| discover_referrers(registries, p, manifests, events),
        )?;
        for (roots, tagged) in found {
            referrer_roots.extend(roots);
            for t in tagged {
                // Two images of one repository can share a subject (by tag and by digest).
                if !pending.iter().any(|p| p.image.name == t.image.name) {
                    pending.push(t);
                }
            }
        }
        // The cosign-style tagged images' graphs.
        let tagged: Vec<&Pending> = pending.iter().skip(graphs.len()).collect();
        parallel(&tagged, jobs, |p| {
            fetch_graph(
                cache,
                registries,
                &p.image.root,
                &p.place,
                &p.image.requested,
            )
        })?;
        let mut seen = HashSet::new();
        referrer_roots.retain(|(d, _, _)| seen.insert(d.digest.clone()));
        parallel(&referrer_roots, jobs, |(d, place, what)| {
            fetch_graph(cache, registries, d, place, what)
        })?;
    }

    // Sorted by name: the package writer's order, so the blobs it reads
    // first are pulled first.
    let mut named: Vec<(&str, Descriptor)> = pending
        .iter()
        .map(|p| {
            (
                p.image.name.as_str(),
                named_entry(plain(&p.image.root), &p.image.name),
            )
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    let mut entries: Vec<Descriptor> = named.into_iter().map(|(_, d)| d).collect();
    entries.extend(referrer_roots.iter().map(|(d, _, _)| plain(d)));
    let plan = plan(&entries, cache_destination, |d| {
        cache.read_small_blob(d, MAX_MANIFEST_BYTES)
    })
    .map_err(CopyError::Plan)?;
    let source = CacheFirst { cache, registries };
    let known = Gathered {
        images: pending.iter().map(|p| p.image.clone()).collect(),
        referrers: referrers_of(&plan),
        ..Gathered::default()
    };
    let arrivals = Arrivals::new(cache);
    let (pulled, beside) = std::thread::scope(|s| {
        let beside = s.spawn(|| alongside(&known, &arrivals));
        let pulled = pull_into(cache, &source, &plan, options.jobs, events, &arrivals);
        arrivals.ended.store(true, Ordering::SeqCst);
        (pulled, beside.join())
    });
    let beside = beside.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    let mut gathered = pulled?;
    gathered.images = known.images;
    if !options.platforms.is_empty() {
        for p in pending.iter().filter(|p| !p.filtered) {
            check_platform(cache, &p.image, &options.platforms, events);
        }
    }
    Ok((gathered, beside))
}

/// The referrers the plan attached to its images, each once.
fn referrers_of(plan: &Plan) -> Vec<Descriptor> {
    let mut referrers: Vec<Descriptor> = Vec::new();
    for r in plan.images.iter().flat_map(|i| &i.referrers) {
        if !referrers.iter().any(|x| x.digest == r.root.digest) {
            referrers.push(plain(&r.root));
        }
    }
    referrers
}

/// The blobs of a pull as they land in the cache, for a reader that goes
/// along (ferry-pack's package writer): see [`Arrivals::wait_for`].
pub struct Arrivals<'c> {
    cache: &'c Store,
    /// Blobs pulled in this run (each was hashed as it arrived), with their sizes.
    pulled: Mutex<BTreeMap<Digest, u64>>,
    /// Set once the pull has ended, whether or not it succeeded.
    ended: AtomicBool,
}

impl<'c> Arrivals<'c> {
    fn new(cache: &'c Store) -> Arrivals<'c> {
        Arrivals {
            cache,
            pulled: Mutex::new(BTreeMap::new()),
            ended: AtomicBool::new(false),
        }
    }

    /// Where `d` stands now; `None`: not in the cache yet.
    fn now(&self, d: &Descriptor) -> Option<Arrival> {
        if !self.cache.has_blob(&d.digest, d.size) {
            None
        } else if self
            .pulled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&d.digest)
        {
            Some(Arrival::Verified)
        } else {
            Some(Arrival::InCache)
        }
    }

    /// Waits until `d` is in the cache ([`Arrival::Verified`] when this run
    /// pulled it, [`Arrival::InCache`] when an earlier run did), or the pull
    /// has ended without it ([`Arrival::Never`]).
    pub fn wait_for(&self, d: &Descriptor) -> Arrival {
        loop {
            if let Some(a) = self.now(d) {
                return a;
            }
            if self.ended.load(Ordering::SeqCst) {
                return self.now(d).unwrap_or(Arrival::Never);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// Runs the copy of `plan` from `source` into the cache and counts what was
/// pulled (each blob once) and what the cache already held; the referrers
/// attached are returned.
pub(crate) fn pull(
    cache: &Store,
    source: &dyn Source,
    plan: &Plan,
    jobs: usize,
    events: &(dyn Fn(PackEvent) + Sync),
) -> Result<Gathered, PackError> {
    pull_into(cache, source, plan, jobs, events, &Arrivals::new(cache))
}

/// [`pull`], recording every blob pulled in `arrivals` as it lands.
fn pull_into(
    cache: &Store,
    source: &dyn Source,
    plan: &Plan,
    jobs: usize,
    events: &(dyn Fn(PackEvent) + Sync),
    arrivals: &Arrivals<'_>,
) -> Result<Gathered, PackError> {
    let pulled = &arrivals.pulled;
    let mut needed: BTreeMap<&Digest, u64> = BTreeMap::new();
    for b in plan.images.iter().flat_map(|i| &i.blobs) {
        needed.insert(&b.digest, b.size);
    }
    let missing: Vec<(&&Digest, &u64)> = needed
        .iter()
        .filter(|(d, size)| !cache.has_blob(d, **size))
        .collect();
    events(PackEvent::Planned {
        blobs: missing.len() as u64,
        bytes: missing.iter().map(|(_, s)| **s).sum(),
        cached: (needed.len() - missing.len()) as u64,
    });
    let sink = StoreSink::new(cache);
    let options = CopyOptions {
        jobs: jobs.max(1),
        force: false,
        clean_holding: false,
    };
    copy_in_order(plan, source, &sink, options, BlobOrder::PlanOrder, &|e| {
        if let CopyEvent::BlobUploaded { digest, size, .. } = &e {
            pulled
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(digest.clone(), *size);
        }
        events(PackEvent::Copy(e));
    })?;
    let pulled = pulled.lock().unwrap_or_else(|p| p.into_inner());
    let all: BTreeSet<&Digest> = plan
        .images
        .iter()
        .flat_map(|i| i.blobs.iter().map(|b| &b.digest))
        .collect();
    Ok(Gathered {
        images: Vec::new(),
        referrers: referrers_of(plan),
        blobs_pulled: pulled.len() as u64,
        blobs_cached: all.len().saturating_sub(pulled.len()) as u64,
        bytes_pulled: pulled.values().sum(),
    })
}

/// Referrers of one image: for its root and every child manifest, the
/// referrers API, else the `sha256-<hex>` fallback tag; plus cosign-style
/// `sha256-<hex>.sig|.att|.sbom` tags (packed as images of their own).
fn discover_referrers(
    registries: &RegistrySource,
    p: &Pending,
    manifests: &[Descriptor],
    events: &(dyn Fn(PackEvent) + Sync),
) -> Result<(Vec<ReferrerRoot>, Vec<Pending>), PackError> {
    let what = |s: &str| format!("{} (referrers of {s})", p.image.requested);
    let err = |s: &Digest| {
        let reference = what(&s.to_string());
        move |source| PackError::Registry {
            reference,
            source: Box::new(source),
        }
    };
    let mut roots = Vec::new();
    let mut tagged = Vec::new();
    let mut via = "api";
    // A filtered index is not at the source: nothing there refers to it.
    let subjects = manifests
        .iter()
        .filter(|m| !(p.filtered && m.digest == p.image.root.digest))
        .map(|m| m.digest.clone());
    for subject in subjects {
        let listed = match registries
            .referrers(&p.place, &subject)
            .map_err(err(&subject))?
        {
            Some(list) => list,
            None => {
                via = "fallback-tag";
                match registries
                    .fetch_manifest(&p.place, &fallback_tag(&subject))
                    .map_err(err(&subject))?
                {
                    Some(f) if media::kind_of(&f.descriptor.media_type) == media::Kind::Index => {
                        serde_json::from_slice::<ferry_store::layout::IndexJson>(&f.bytes)
                            .map(|i| i.manifests)
                            .unwrap_or_default()
                    }
                    _ => Vec::new(),
                }
            }
        };
        for d in listed {
            roots.push((plain(&d), p.place.clone(), what(&subject.to_string())));
        }
        for suffix in [".sig", ".att", ".sbom"] {
            let tag = format!("{}{suffix}", fallback_tag(&subject));
            if let Some(f) = registries
                .fetch_manifest(&p.place, &tag)
                .map_err(err(&subject))?
            {
                let name = format!("{}/{}:{tag}", p.place.host, p.place.repository);
                registries.locate(&f.descriptor.digest, &p.place);
                tagged.push(Pending {
                    image: GatheredImage {
                        name: name.clone(),
                        root: f.descriptor.clone(),
                        requested: name,
                        source_digest: f.descriptor.digest.clone(),
                        platforms: Vec::new(),
                    },
                    place: p.place.clone(),
                    filtered: false,
                });
            }
        }
    }
    if !roots.is_empty() || !tagged.is_empty() {
        events(PackEvent::Referrers {
            name: p.image.name.clone(),
            artifacts: roots.len(),
            tags: tagged.len(),
            via: via.to_owned(),
        });
    }
    Ok((roots, tagged))
}

/// Warns when a single manifest's config names none of the `--platform`s
/// (it is kept whatever they say); the config is in the cache by now.
fn check_platform(
    cache: &Store,
    image: &GatheredImage,
    wanted: &[PlatformSpec],
    events: &(dyn Fn(PackEvent) + Sync),
) {
    if media::kind_of(&image.root.media_type) != media::Kind::Manifest {
        return;
    }
    let Ok(bytes) = cache.read_small_blob(&image.root, MAX_MANIFEST_BYTES) else {
        return;
    };
    let Ok(children) = children_of(&image.root, &bytes) else {
        return;
    };
    let Some(config) = children.descriptors.first() else {
        return;
    };
    let Ok(config) = cache.read_small_blob(config, MAX_MANIFEST_BYTES) else {
        return;
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&config) else {
        return;
    };
    if doc["os"].is_null() {
        return;
    }
    if !wanted
        .iter()
        .any(|w| w.matches(&serde_json::json!({"platform": doc})))
    {
        let has = crate::platform::platform_of(&serde_json::json!({"platform": doc}));
        events(PackEvent::PlatformMismatch {
            name: image.name.clone(),
            has,
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_are_json_lines_with_their_kind_and_copy_events_keep_the_engines_names() {
        let d = Digest::sha256_of(b"x");
        let copy = serde_json::to_value(PackEvent::Copy(CopyEvent::BlobUploaded {
            repository: "h/r".into(),
            digest: d.clone(),
            size: 1,
            resumed_from: 0,
        }))
        .unwrap();
        assert_eq!(copy["event"], "blob_uploaded", "{copy}");
        let filtered = serde_json::to_value(PackEvent::Filtered {
            name: "h/r:1".into(),
            from: d.clone(),
            to: d,
            kept: vec!["linux/amd64".into()],
            of: 2,
        })
        .unwrap();
        assert_eq!(filtered["event"], "filtered", "{filtered}");
        assert_eq!(filtered["kept"][0], "linux/amd64");
    }

    #[test]
    fn names_keep_the_tag_or_the_digest_and_map_to_host_repositories() {
        let d = Digest::sha256_of(b"m");
        let tagged: Reference = "reg.example:5000/a/b:1.0".parse().unwrap();
        assert_eq!(image_name(&tagged, &d), "reg.example:5000/a/b:1.0");
        let pinned: Reference = format!("reg.example:5000/a/b:1.0@{d}").parse().unwrap();
        assert_eq!(image_name(&pinned, &d), format!("reg.example:5000/a/b@{d}"));
        let dest = cache_destination("reg.example:5000/a/b:1.0").unwrap();
        assert_eq!(dest.repository, "reg.example:5000/a/b");
        assert_eq!(dest.tag.as_deref(), Some("1.0"));
        assert!(cache_destination("1.0").is_err());
    }
}
