//! Comparing a registry with a store: for each image at its mapped reference,
//! `in-sync`, `missing`, `differs` or `incomplete`, the blobs it lacks, and the
//! bytes a push would send (computed exactly as the push decides: a blob
//! present in any repository that needs it is mounted, not sent).
//! HEAD requests only, in parallel, unless `--deep` re-hashes every blob.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::time::Instant;

use ferry_store::{media, Descriptor, Digest, Hasher, Store};
use serde::Serialize;

use crate::client::{Access, Client};
use crate::error::RegistryError;
use crate::pool::parallel;
use crate::push::{plan_with_orphans, PushError};

/// Diff settings.
#[derive(Debug, Clone, Copy)]
pub struct DiffOptions {
    /// Concurrent requests.
    pub jobs: usize,
    /// Download and re-hash every present blob.
    pub deep: bool,
    /// List tags in the mapped repositories that the package does not have.
    pub extra: bool,
}

/// One image's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Tag at the right digest, everything present.
    InSync,
    /// Tag or repository absent.
    Missing,
    /// Tag at another digest.
    Differs,
    /// Right digest, but a child manifest or blob is absent (or corrupt, with --deep).
    Incomplete,
}

/// A blob or manifest the repository lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingItem {
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// A blob the registry serves with wrong content (`--deep`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CorruptItem {
    /// The digest it should have.
    pub digest: Digest,
    /// What the served bytes hash to.
    pub actual: String,
}

/// One image of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ImageDiff {
    /// Source reference.
    pub source: String,
    /// Mapped destination reference.
    pub target: String,
    /// Status.
    pub status: Status,
    /// The package's manifest digest.
    pub expected_digest: Digest,
    /// What the tag resolves to in the registry (absent when missing).
    pub actual_digest: Option<Digest>,
    /// Manifests and blobs absent from the repository.
    pub missing: Vec<MissingItem>,
    /// Sum of their sizes.
    pub missing_bytes: u64,
    /// Blobs whose served content does not match (`--deep` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrupt: Vec<CorruptItem>,
}

/// A tag present in the registry but not in the package (`--extra`).
#[derive(Debug, Clone, Serialize)]
pub struct ExtraTag {
    /// Repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
}

/// Totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DiffSummary {
    /// Images compared.
    pub images: usize,
    /// In sync.
    pub in_sync: usize,
    /// Missing.
    pub missing: usize,
    /// Differing.
    pub differs: usize,
    /// Incomplete.
    pub incomplete: usize,
    /// Bytes a push would upload (equal to what ferry-push then uploads).
    pub push_bytes: u64,
    /// Blobs a push would upload.
    pub push_blobs: usize,
    /// Blobs re-hashed by --deep.
    pub deep_checked_blobs: usize,
    /// Bytes re-hashed by --deep.
    pub deep_checked_bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// Per image.
    pub images: Vec<ImageDiff>,
    /// Totals.
    pub summary: DiffSummary,
    /// Tags the package does not have (`--extra`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_tags: Option<Vec<ExtraTag>>,
}

impl DiffReport {
    /// True when every image is in sync (and nothing is corrupt).
    pub fn in_sync(&self) -> bool {
        self.images.iter().all(|i| i.status == Status::InSync)
    }
}

/// Compares the registry behind `client` with every image named in `store`.
pub fn diff_store(
    store: &Store,
    client: &Client,
    options: &DiffOptions,
) -> Result<DiffReport, PushError> {
    let started = Instant::now();
    // Referrers count as part of their image: a push sends them too.
    let (plans, _) = plan_with_orphans(store, client)?;
    let wrap =
        |context: String| move |source: RegistryError| PushError::Registry { context, source };
    client
        .ping()
        .map_err(wrap(format!("registry {}", client.target().host)))?;

    // 1. Every tag, every manifest by digest, every blob: one HEAD each, in parallel.
    //    A tagged image's own manifest is not asked by digest: a tag at the
    //    expected digest proves it is there (asked below only for the others).
    #[derive(Clone)]
    enum Q {
        Tag(usize, String, String),
        Manifest(String, Descriptor),
        Blob(String, Descriptor),
    }
    let mut questions: Vec<Q> = Vec::new();
    let mut pairs: BTreeSet<(String, Digest)> = BTreeSet::new();
    for (i, p) in plans.iter().enumerate() {
        let repo = &p.mapped.repository;
        let reference = p
            .mapped
            .tag
            .clone()
            .unwrap_or_else(|| p.root.digest.to_string());
        questions.push(Q::Tag(i, repo.clone(), reference));
        for m in &p.manifests {
            if p.mapped.tag.is_some() && m.digest == p.root.digest {
                continue;
            }
            if pairs.insert((repo.clone(), m.digest.clone())) {
                questions.push(Q::Manifest(repo.clone(), m.clone()));
            }
        }
        for b in &p.blobs {
            if pairs.insert((repo.clone(), b.digest.clone())) {
                questions.push(Q::Blob(repo.clone(), b.clone()));
            }
        }
    }
    enum A {
        Tag(usize, Option<Digest>),
        Present(String, Digest, bool),
    }
    let answers = parallel(&questions, options.jobs, |q| match q {
        Q::Tag(i, repo, reference) => {
            let info = client.manifest_head(repo, reference, Access::Pull)?;
            Ok(A::Tag(*i, info.map(|m| m.digest)))
        }
        Q::Manifest(repo, d) => {
            let info = client.manifest_head(repo, &d.digest.to_string(), Access::Pull)?;
            Ok(A::Present(repo.clone(), d.digest.clone(), info.is_some()))
        }
        Q::Blob(repo, d) => {
            let size = client.blob_size(repo, &d.digest, Access::Pull)?;
            Ok(A::Present(
                repo.clone(),
                d.digest.clone(),
                size == Some(d.size),
            ))
        }
    })
    .map_err(wrap("comparing with the registry".into()))?;
    let mut tags: HashMap<usize, Option<Digest>> = HashMap::new();
    let mut present: HashMap<(String, Digest), bool> = HashMap::new();
    for a in answers {
        match a {
            A::Tag(i, d) => {
                tags.insert(i, d);
            }
            A::Present(repo, d, p) => {
                present.insert((repo, d), p);
            }
        }
    }
    let mut roots_to_ask: BTreeSet<(String, Digest)> = BTreeSet::new();
    for (i, p) in plans.iter().enumerate() {
        let key = (p.mapped.repository.clone(), p.root.digest.clone());
        if present.contains_key(&key) {
            continue;
        }
        if tags.get(&i).cloned().flatten().as_ref() == Some(&p.root.digest) {
            present.insert(key, true);
        } else {
            roots_to_ask.insert(key);
        }
    }
    let roots_to_ask: Vec<(String, Digest)> = roots_to_ask.into_iter().collect();
    let root_answers = parallel(&roots_to_ask, options.jobs, |(repo, digest)| {
        let info = client.manifest_head(repo, &digest.to_string(), Access::Pull)?;
        Ok(info.is_some())
    })
    .map_err(wrap("comparing with the registry".into()))?;
    for (key, found) in roots_to_ask.into_iter().zip(root_answers) {
        present.entry(key).or_insert(found);
    }

    // 2. --deep: stream every present blob back and re-hash it.
    let mut corrupt: HashMap<(String, Digest), String> = HashMap::new();
    let mut summary = DiffSummary::default();
    if options.deep {
        let mut unique: BTreeMap<(String, Digest), Descriptor> = BTreeMap::new();
        for p in &plans {
            for d in p.blobs.iter().chain(&p.manifests) {
                let key = (p.mapped.repository.clone(), d.digest.clone());
                if present.get(&key) == Some(&true) {
                    unique.entry(key).or_insert_with(|| d.clone());
                }
            }
        }
        let targets: Vec<(String, Descriptor)> =
            unique.into_iter().map(|((r, _), d)| (r, d)).collect();
        let results = parallel(&targets, options.jobs, |(repo, d)| {
            let actual = if media::is_manifest_like(&d.media_type) {
                match client.get_manifest(repo, &d.digest.to_string()) {
                    Ok(Some(_)) => d.digest.clone(),
                    Ok(None) => {
                        return Ok((repo.clone(), d.clone(), Some("absent on GET".to_owned())))
                    }
                    Err(RegistryError::DigestMismatch { actual, .. }) => {
                        return Ok((repo.clone(), d.clone(), Some(actual)));
                    }
                    Err(e) => return Err(e),
                }
            } else {
                let resp = client.get_blob(repo, &d.digest)?;
                let mut reader = resp.reader();
                let mut h = Hasher::new(d.digest.algorithm());
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .map_err(|e| RegistryError::Transport {
                            what: format!("GET blob {}", d.digest),
                            detail: e.to_string(),
                            retryable: true,
                        })?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                h.finish()
            };
            Ok((
                repo.clone(),
                d.clone(),
                (actual != d.digest).then(|| actual.to_string()),
            ))
        })
        .map_err(wrap("--deep re-hashing".into()))?;
        for (repo, d, bad) in results {
            summary.deep_checked_blobs += 1;
            summary.deep_checked_bytes += d.size;
            if let Some(actual) = bad {
                corrupt.insert((repo, d.digest), actual);
            }
        }
    }

    // 3. Statuses, and the bytes a push would send (a blob present in any
    //    repository that needs it would be mounted, not sent).
    let mut needed_in: BTreeMap<Digest, (u64, Vec<String>)> = BTreeMap::new();
    for p in &plans {
        for b in &p.blobs {
            needed_in
                .entry(b.digest.clone())
                .or_insert((b.size, Vec::new()))
                .1
                .push(p.mapped.repository.clone());
        }
    }
    for (digest, (size, repos)) in &needed_in {
        if !repos
            .iter()
            .any(|r| present.get(&(r.clone(), digest.clone())) == Some(&true))
        {
            summary.push_bytes += size;
            summary.push_blobs += 1;
        }
    }
    let mut images = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let repo = &p.mapped.repository;
        let actual = tags.get(&i).cloned().flatten();
        let missing: Vec<MissingItem> = p
            .manifests
            .iter()
            .chain(&p.blobs)
            .filter(|d| present.get(&(repo.clone(), d.digest.clone())) != Some(&true))
            .map(|d| MissingItem {
                digest: d.digest.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
            })
            .collect();
        let bad: Vec<CorruptItem> = p
            .manifests
            .iter()
            .chain(&p.blobs)
            .filter_map(|d| {
                corrupt
                    .get(&(repo.clone(), d.digest.clone()))
                    .map(|a| CorruptItem {
                        digest: d.digest.clone(),
                        actual: a.clone(),
                    })
            })
            .collect();
        let status = match &actual {
            None => Status::Missing,
            Some(d) if *d != p.root.digest => Status::Differs,
            Some(_) if !missing.is_empty() || !bad.is_empty() => Status::Incomplete,
            Some(_) => Status::InSync,
        };
        match status {
            Status::InSync => summary.in_sync += 1,
            Status::Missing => summary.missing += 1,
            Status::Differs => summary.differs += 1,
            Status::Incomplete => summary.incomplete += 1,
        }
        images.push(ImageDiff {
            source: p.source.clone(),
            target: p.target.clone(),
            status,
            expected_digest: p.root.digest.clone(),
            actual_digest: actual,
            missing_bytes: missing.iter().map(|m| m.size).sum(),
            missing,
            corrupt: bad,
        });
    }
    summary.images = images.len();

    // 4. --extra: tags in the mapped repositories that the package lacks.
    let extra_tags = if options.extra {
        let repos: BTreeSet<String> = plans.iter().map(|p| p.mapped.repository.clone()).collect();
        let ours: BTreeSet<(String, String)> = plans
            .iter()
            .filter_map(|p| {
                p.mapped
                    .tag
                    .clone()
                    .map(|t| (p.mapped.repository.clone(), t))
            })
            .collect();
        let repos: Vec<String> = repos.into_iter().collect();
        let listed = parallel(&repos, options.jobs, |r| {
            Ok((r.clone(), client.list_tags(r)?))
        })
        .map_err(wrap("listing tags".into()))?;
        let mut extra = Vec::new();
        for (repo, tags) in listed {
            for tag in tags {
                if !ours.contains(&(repo.clone(), tag.clone())) {
                    extra.push(ExtraTag {
                        repository: repo.clone(),
                        tag,
                    });
                }
            }
        }
        Some(extra)
    } else {
        None
    };
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(DiffReport {
        images,
        summary,
        extra_tags,
    })
}
