//! Comparing a plan with a sink, by reads only: for each image at its
//! destination, `in-sync`, `missing`, `differs` or `incomplete`, the blobs it
//! lacks, and the bytes a copy would send (computed as the executor decides:
//! a blob present in any repository that needs it is mounted, not sent).
//! Presence questions only, in parallel, unless `--deep` reads every present
//! manifest and blob back and re-hashes it against the digest asked for.
//!
//! Invariant: nothing is written to the sink.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use ferry_store::verify_reader::{Mismatch, VerifyingReader};
use ferry_store::{media, Descriptor, Digest};
use serde::Serialize;

use crate::plan::Plan;
use crate::pool::parallel;
use crate::report::CopyError;
use crate::sink::{Sink, SinkError, SinkErrorKind};

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

/// Compares `plan` with what `sink` holds.
pub fn compare(
    plan: &Plan,
    sink: &dyn Sink,
    options: &DiffOptions,
) -> Result<DiffReport, CopyError> {
    let started = Instant::now();
    sink.ping().map_err(CopyError::sink(sink.describe()))?;
    let plans = &plan.images;

    // 1. Every tag, every manifest by digest, every blob: one question each, in parallel.
    //    A tagged image's own manifest is not asked by digest: a tag at the
    //    expected digest proves it is there (asked below only for the others).
    enum Q<'p> {
        Tag(usize, &'p str, String),
        Manifest(&'p str, &'p Descriptor),
        Blob(&'p str, &'p Descriptor),
    }
    let mut questions: Vec<Q> = Vec::new();
    let mut pairs: BTreeSet<(&str, &Digest)> = BTreeSet::new();
    for (i, p) in plans.iter().enumerate() {
        let repo = p.dest.repository.as_str();
        let reference = p
            .dest
            .tag
            .clone()
            .unwrap_or_else(|| p.root.digest.to_string());
        questions.push(Q::Tag(i, repo, reference));
        for m in &p.manifests {
            if p.dest.tag.is_some() && m.digest == p.root.digest {
                continue;
            }
            if pairs.insert((repo, &m.digest)) {
                questions.push(Q::Manifest(repo, m));
            }
        }
        for b in &p.blobs {
            if pairs.insert((repo, &b.digest)) {
                questions.push(Q::Blob(repo, b));
            }
        }
    }
    enum A {
        Tag(usize, Option<Digest>),
        Present(String, Digest, bool),
    }
    let wrap = |what: &str| CopyError::sink(what.to_owned());
    let answers = parallel(&questions, options.jobs, |q| match q {
        Q::Tag(i, repo, reference) => Ok(A::Tag(*i, sink.manifest_digest(repo, reference)?)),
        Q::Manifest(repo, d) => Ok(A::Present(
            repo.to_string(),
            d.digest.clone(),
            sink.manifest_digest(repo, &d.digest.to_string())?.is_some(),
        )),
        Q::Blob(repo, d) => Ok(A::Present(
            repo.to_string(),
            d.digest.clone(),
            sink.has_blob(repo, d)?,
        )),
    })
    .map_err(wrap("comparing with the registry"))?;
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
        let key = (p.dest.repository.clone(), p.root.digest.clone());
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
        Ok::<_, SinkError>(sink.manifest_digest(repo, &digest.to_string())?.is_some())
    })
    .map_err(wrap("comparing with the registry"))?;
    for (key, found) in roots_to_ask.into_iter().zip(root_answers) {
        present.entry(key).or_insert(found);
    }

    // 2. --deep: read every present manifest and blob back and re-hash it.
    let mut corrupt: HashMap<(String, Digest), String> = HashMap::new();
    let mut summary = DiffSummary::default();
    if options.deep {
        let mut unique: BTreeMap<(String, Digest), Descriptor> = BTreeMap::new();
        for p in plans {
            for d in p.blobs.iter().chain(&p.manifests) {
                let key = (p.dest.repository.clone(), d.digest.clone());
                if present.get(&key) == Some(&true) {
                    unique.entry(key).or_insert_with(|| d.clone());
                }
            }
        }
        let targets: Vec<(String, Descriptor)> =
            unique.into_iter().map(|((r, _), d)| (r, d)).collect();
        let results = parallel(&targets, options.jobs, |(repo, d)| {
            Ok::<_, SinkError>((repo.clone(), d.clone(), read_back(sink, repo, d)?))
        })
        .map_err(wrap("--deep re-hashing"))?;
        for (repo, d, bad) in results {
            summary.deep_checked_blobs += 1;
            summary.deep_checked_bytes += d.size;
            if let Some(actual) = bad {
                corrupt.insert((repo, d.digest), actual);
            }
        }
    }

    // 3. Statuses, and the bytes a copy would send (a blob present in any
    //    repository that needs it would be mounted, not sent).
    for need in plan.blob_needs(&vec![false; plans.len()]) {
        if !need
            .needed
            .iter()
            .any(|r| present.get(&(r.clone(), need.desc.digest.clone())) == Some(&true))
        {
            summary.push_bytes += need.desc.size;
            summary.push_blobs += 1;
        }
    }
    let mut images = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        let repo = &p.dest.repository;
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
            target: p.dest.display.clone(),
            status,
            expected_digest: p.root.digest.clone(),
            actual_digest: actual,
            missing_bytes: missing.iter().map(|m| m.size).sum(),
            missing,
            corrupt: bad,
        });
    }
    summary.images = images.len();

    // 4. --extra: tags in the destination repositories that the plan lacks.
    let extra_tags = if options.extra {
        let repos: BTreeSet<String> = plans.iter().map(|p| p.dest.repository.clone()).collect();
        let ours: BTreeSet<(String, String)> = plans
            .iter()
            .filter_map(|p| p.dest.tag.clone().map(|t| (p.dest.repository.clone(), t)))
            .collect();
        let repos: Vec<String> = repos.into_iter().collect();
        let listed = parallel(&repos, options.jobs, |r| {
            Ok::<_, SinkError>((r.clone(), sink.list_tags(r)?))
        })
        .map_err(wrap("listing tags"))?;
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

/// Reads one present manifest or blob back and hashes it against the digest
/// asked for: `None` when it matches, else what the served bytes hash to.
fn read_back(sink: &dyn Sink, repo: &str, d: &Descriptor) -> Result<Option<String>, SinkError> {
    if media::is_manifest_like(&d.media_type) {
        return match sink.get_manifest(repo, &d.digest.to_string()) {
            // By digest, the sink has checked the bytes against it already.
            Ok(Some(_)) => Ok(None),
            Ok(None) => Ok(Some("absent on GET".to_owned())),
            Err(SinkError {
                kind: SinkErrorKind::Mismatch { actual },
                ..
            }) => Ok(Some(actual)),
            Err(e) => Err(e),
        };
    }
    let reader = sink.read_blob(repo, d)?;
    let verdict = VerifyingReader::new(reader, &d.digest, None)
        .drain()
        .map_err(|e| {
            SinkError::new(
                SinkErrorKind::Transient,
                format!("GET blob {}: {e}", d.digest),
            )
        })?;
    Ok(match verdict {
        Ok(_) => None,
        Err(Mismatch::Digest { actual, .. }) => Some(actual.to_string()),
        Err(other) => Some(other.to_string()),
    })
}
