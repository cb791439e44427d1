//! A volume set as one logical package: the volumes found (a directory, or
//! files in any order), checked to be of one set, missing or damaged ones
//! rebuilt from parity when there is enough of it, and read volume by volume
//! in one pass as the uncompressed tar of the single package
//! ([`VolumeSet::reader`]). When more volumes are missing than parity can
//! rebuild, the logical package holds only the images whose every entry has
//! arrived ([`VolumeSet::waiting`] names the others and their volumes).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use ferry_store::descriptor::children_of;
use ferry_store::{Descriptor, Digest, Hasher};

use crate::pack::manifest::{EntryKind, PackageManifest};
use crate::pack::{canonical_header, padding, BLOCK};

use super::layout::TRAILER;
use super::parity::{rebuild, ParitySource};
use super::read::{check_volume, decoded, open_volume, parity_offset, OpenVolume, TarCursor};
use super::{claimed_by_name, numbers, Role, VolumeError, VolumeHeader};

/// A data volume's metadata entries: name and bytes.
type Metadata = Vec<(String, Vec<u8>)>;

/// An image that cannot be completed from the volumes present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingImage {
    /// Its name (or `referrer sha256:…`).
    pub name: String,
    /// Data volumes it needs that are missing.
    pub volumes: Vec<u32>,
}

/// A data volume rebuilt from parity.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// Its number.
    pub index: u32,
    /// Why: missing, or what was wrong with it.
    pub reason: String,
    /// The rebuilt file.
    pub path: PathBuf,
    /// Volumes read to rebuild it ("data 1, 2, 4; parity 1").
    pub from: String,
}

/// A volume set opened for reading.
pub struct VolumeSet {
    /// The set id.
    pub set_id: Digest,
    /// A data volume's header (layout, totals).
    pub header: VolumeHeader,
    /// Data volume files by number (from 1; `None`: missing beyond repair).
    pub data: Vec<Option<PathBuf>>,
    /// Parity volume files by number.
    pub parity: Vec<Option<(PathBuf, VolumeHeader)>>,
    /// `oci-layout`, `index.json` (as emitted: only complete images when some wait), `ferry-package.json`.
    pub metadata: Vec<(String, Vec<u8>)>,
    /// The package manifest.
    pub manifest: PackageManifest,
    /// Entries the logical package holds.
    pub include: Vec<bool>,
    /// Images waiting for missing volumes.
    pub waiting: Vec<WaitingImage>,
    /// Volumes rebuilt from parity.
    pub rebuilt: Vec<Rebuilt>,
    /// Files given that were ignored (not volumes), with why.
    pub ignored: Vec<(PathBuf, String)>,
    scratch: Option<PathBuf>,
    scratch_root: PathBuf,
    /// Every file given that holds a volume, by (role, index).
    found: HashMap<(Role, u32), PathBuf>,
}

impl Drop for VolumeSet {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// True when `path` is a volume or a directory holding volumes (and no `index.json`).
pub fn is_volume_source(path: &Path) -> bool {
    if path.is_dir() {
        if path.join("index.json").exists() {
            return false;
        }
        return std::fs::read_dir(path).is_ok_and(|list| {
            list.flatten().any(|e| {
                let p = e.path();
                p.is_file() && !hidden(&p) && open_volume(&p).is_ok()
            })
        });
    }
    open_volume(path).is_ok()
}

fn hidden(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

impl VolumeSet {
    /// Opens the volumes in `inputs` (files and directories, any order);
    /// rebuilds into `scratch` (default: a hidden directory beside the first volume).
    pub fn open(inputs: &[PathBuf], scratch: Option<&Path>) -> Result<VolumeSet, VolumeError> {
        let mut candidates: Vec<(PathBuf, bool)> = Vec::new();
        for input in inputs {
            if input.is_dir() {
                let mut list: Vec<PathBuf> = std::fs::read_dir(input)
                    .map_err(io_at(input))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && !hidden(p))
                    .collect();
                list.sort();
                candidates.extend(list.into_iter().map(|p| (p, false)));
            } else {
                candidates.push((input.clone(), true));
            }
        }
        let mut ignored = Vec::new();
        let mut headers: Vec<(PathBuf, VolumeHeader, Metadata)> = Vec::new();
        let mut unreadable: Vec<(PathBuf, Role, u32, String)> = Vec::new();
        for (path, explicit) in candidates {
            match open_volume(&path) {
                Ok(v) => headers.push((path, v.header, v.metadata)),
                Err(e) => match claimed_by_name(&path) {
                    Some((role, index, _)) => unreadable.push((path, role, index, e.to_string())),
                    None if explicit => return Err(e),
                    None => ignored.push((path, e.to_string())),
                },
            }
        }
        if headers.is_empty() {
            return Err(VolumeError::Empty(
                inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        // The set most volumes belong to; the others are refused.
        let mut count: BTreeMap<&Digest, usize> = BTreeMap::new();
        for (_, h, _) in &headers {
            *count.entry(&h.set_id).or_default() += 1;
        }
        let best = count
            .iter()
            .max_by_key(|(_, c)| **c)
            .map(|(d, _)| (*d).clone())
            .expect("one header");
        let foreign: Vec<(PathBuf, Digest)> = headers
            .iter()
            .filter(|(_, h, _)| h.set_id != best)
            .map(|(p, h, _)| (p.clone(), h.set_id.clone()))
            .collect();
        if !foreign.is_empty() {
            return Err(VolumeError::Foreign { set: best, foreign });
        }
        let reference = headers
            .iter()
            .find(|(_, h, _)| h.role == Role::Data)
            .or(headers.first())
            .map(|(_, h, _)| h.clone())
            .expect("one header");
        let n = reference.data_volumes as usize;
        let p = reference.parity_volumes as usize;
        let mut found: HashMap<(Role, u32), PathBuf> = HashMap::new();
        let mut parity: Vec<Option<(PathBuf, VolumeHeader)>> = vec![None; p];
        let mut metadata = Vec::new();
        for (path, h, meta) in headers {
            if let Some(first) = found.get(&(h.role, h.index)) {
                if std::fs::read(first).ok() != std::fs::read(&path).ok() {
                    return Err(VolumeError::Duplicate {
                        label: h.label(),
                        first: first.clone(),
                        second: path,
                    });
                }
                continue;
            }
            if h.role == Role::Data && metadata.is_empty() {
                metadata = meta;
            }
            if h.role == Role::Parity {
                parity[h.index as usize - 1] = Some((path.clone(), h.clone()));
            }
            found.insert((h.role, h.index), path);
        }
        let scratch_root = scratch.map(Path::to_path_buf).unwrap_or_else(|| {
            let first = found.values().next().expect("one volume");
            first
                .parent()
                .unwrap_or(Path::new("."))
                .join(format!(".ferry-rebuild-{}", super::short(&best)))
        });
        let mut set = VolumeSet {
            set_id: best,
            data: (1..=n as u32)
                .map(|i| found.get(&(Role::Data, i)).cloned())
                .collect(),
            header: reference,
            parity,
            metadata,
            manifest: empty_manifest(),
            include: Vec::new(),
            waiting: Vec::new(),
            rebuilt: Vec::new(),
            ignored,
            scratch: None,
            scratch_root,
            found,
        };
        let damaged: Vec<(u32, String)> = unreadable
            .iter()
            .filter(|(_, role, i, _)| {
                *role == Role::Data && (*i as usize) <= n && set.data[*i as usize - 1].is_none()
            })
            .map(|(_, _, i, why)| (*i, why.clone()))
            .collect();
        let missing: Vec<u32> = (1..=n as u32)
            .filter(|i| set.data[*i as usize - 1].is_none())
            .collect();
        // zstd volumes are checked frame by frame as they are read, and a bad
        // frame is rebuilt before any of its bytes are used; xz and plain tar
        // volumes would hand bytes on before their check, so with parity they
        // are checked whole against the parity records first.
        if !missing.is_empty() || (set.header.compression != "zstd-seekable" && p > 0) {
            set.repair(&damaged, &[])?;
        }
        if set.metadata.is_empty() {
            let first = set.data.iter().flatten().next().cloned();
            if let Some(path) = first {
                set.metadata = open_volume(&path)?.metadata;
            }
        }
        if set.metadata.len() != 3 {
            let missing: Vec<u32> = (1..=n as u32).collect();
            return Err(VolumeError::Missing {
                missing,
                damaged: vec![],
                parity_usable: set.usable_parity(),
                data_volumes: n as u32,
            });
        }
        set.manifest =
            PackageManifest::parse(&set.metadata[2].1).map_err(|why| VolumeError::Corrupt {
                file: set
                    .data
                    .iter()
                    .flatten()
                    .next()
                    .cloned()
                    .unwrap_or_default(),
                label: "ferry-package.json".into(),
                why,
            })?;
        set.include = vec![true; set.manifest.entries.len()];
        if set.data.iter().any(Option::is_none) {
            set.plan_partial()?;
        }
        Ok(set)
    }

    fn usable_parity(&self) -> u32 {
        self.parity.iter().flatten().count() as u32
    }

    /// Volumes holding entry `e`.
    fn volumes_of(&self, e: usize) -> Vec<u32> {
        self.header
            .layout
            .iter()
            .enumerate()
            .filter(|(_, r)| (r[0] as usize) <= e && e < r[1] as usize)
            .map(|(i, _)| i as u32 + 1)
            .collect()
    }

    /// Checks every volume against the parity records and rebuilds the missing
    /// and damaged data volumes (`known`: damaged ones already found; `also`:
    /// data volumes found damaged while reading). Leaves the set partial when
    /// there is not enough parity.
    fn repair(
        &mut self,
        known: &[(u32, String)],
        also: &[(u32, String)],
    ) -> Result<(), VolumeError> {
        let n = self.header.data_volumes as usize;
        let mut bad: BTreeMap<u32, String> = known.iter().chain(also).cloned().collect();
        for i in 1..=n as u32 {
            if self.data[i as usize - 1].is_none() {
                bad.entry(i).or_insert_with(|| "missing".into());
            }
        }
        // Usable parity: intact parity volumes (checked whole).
        let mut sources = Vec::new();
        let mut records = None;
        for (j, slot) in self.parity.iter().enumerate() {
            let Some((path, h)) = slot else { continue };
            let check = check_volume(path)?;
            if check.problems.is_empty() {
                if let Some(info) = h.parity.clone() {
                    records.get_or_insert((h.data_files.clone(), info));
                    sources.push(ParitySource {
                        index: j as u32 + 1,
                        path: path.clone(),
                        offset: parity_offset(h.to_bytes().len() as u64),
                    });
                }
            }
        }
        let Some((files, info)) = records else {
            return Ok(()); // no parity: the set stays partial
        };
        // Present data volumes: compared whole with the parity's records.
        let mut present = Vec::new();
        for i in 1..=n as u32 {
            if bad.contains_key(&i) {
                continue;
            }
            let path = self.data[i as usize - 1].clone().expect("present");
            let rec = &files[i as usize - 1];
            let size = std::fs::metadata(&path).map_err(io_at(&path))?.len();
            let ok = size == rec.size && sha256_file(&path)? == rec.sha256;
            if ok {
                present.push((i as usize - 1, path));
            } else {
                bad.insert(i, "damaged (its bytes differ from the set's record)".into());
            }
        }
        if bad.is_empty() {
            return Ok(());
        }
        if bad.len() > sources.len() {
            for i in bad.keys() {
                self.data[*i as usize - 1] = None;
            }
            return Ok(()); // partial: decided by the caller
        }
        // Beside the set, or (read-only media) in the temporary directory.
        let mut dir = self.scratch_root.clone();
        if std::fs::create_dir_all(&dir).is_err() {
            dir = std::env::temp_dir().join(dir.file_name().unwrap_or_default());
            std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        self.scratch = Some(dir.clone());
        let targets: Vec<(usize, PathBuf)> = bad
            .keys()
            .map(|i| (*i as usize - 1, dir.join(&files[*i as usize - 1].name)))
            .collect();
        let used: Vec<ParitySource> = sources.into_iter().take(targets.len()).collect();
        rebuild(
            &files,
            &info,
            self.header.parity_volumes,
            &present,
            &used,
            &targets,
        )?;
        let from = format!(
            "data volume(s) {} and parity volume(s) {}",
            numbers(
                &present
                    .iter()
                    .map(|(i, _)| *i as u32 + 1)
                    .collect::<Vec<_>>()
            ),
            numbers(&used.iter().map(|s| s.index).collect::<Vec<_>>())
        );
        for (i, path) in targets {
            let index = i as u32 + 1;
            self.data[i] = Some(path.clone());
            self.rebuilt.push(Rebuilt {
                index,
                reason: bad[&index].clone(),
                path,
                from: from.clone(),
            });
        }
        Ok(())
    }

    /// With data volumes missing beyond repair (a partial set): which images can
    /// be completed, which wait, and the `index.json` of the complete ones.
    fn plan_partial(&mut self) -> Result<(), VolumeError> {
        let missing: BTreeSet<u32> = (1..=self.header.data_volumes)
            .filter(|i| self.data[*i as usize - 1].is_none())
            .collect();
        let entry_ok: Vec<bool> = (0..self.manifest.entries.len())
            .map(|e| self.volumes_of(e).iter().all(|v| !missing.contains(v)))
            .collect();
        // Manifests held by present volumes (they come first in each volume;
        // one cut into parts is rejoined, and kept only when whole and right).
        let mut manifests: HashMap<Digest, Vec<u8>> = HashMap::new();
        let index_of: HashMap<&Digest, usize> = self
            .manifest
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (&e.digest, i))
            .collect();
        let mut joining: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut buf = vec![0u8; 1 << 20];
        for path in self.data.iter().flatten() {
            let mut v = open_volume(path)?;
            let label = v.header.label();
            let corrupt = |e: io::Error| VolumeError::Corrupt {
                file: path.clone(),
                label: label.clone(),
                why: e.to_string(),
            };
            for item in v.header.items.clone() {
                let entry = &self.manifest.entries[item.entry as usize];
                if entry.kind != EntryKind::Manifest {
                    break;
                }
                let Some((_, size)) = v.cursor.next_entry().map_err(corrupt)? else {
                    break;
                };
                let data = joining.entry(item.entry).or_default();
                if item.part == 1 {
                    data.clear();
                }
                v.cursor
                    .data(size, &mut buf, &mut |b| data.extend_from_slice(b))
                    .map_err(corrupt)?;
                if item.part == item.parts {
                    let data = joining.remove(&item.entry).unwrap_or_default();
                    if entry.digest.of_same_algorithm(&data) == entry.digest {
                        manifests.insert(entry.digest.clone(), data);
                    }
                }
            }
        }
        let roots: Vec<(String, Descriptor)> = self
            .manifest
            .images
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    Descriptor::new(i.media_type.clone(), i.digest.clone(), 0),
                )
            })
            .chain(self.manifest.referrers.iter().map(|r| {
                (
                    format!("referrer {}", r.digest),
                    Descriptor::new(r.media_type.clone(), r.digest.clone(), 0),
                )
            }))
            .collect();
        let mut include = vec![false; self.manifest.entries.len()];
        let mut complete: BTreeSet<Digest> = BTreeSet::new();
        for (name, root) in roots {
            let mut need: BTreeSet<u32> = BTreeSet::new();
            let mut entries = Vec::new();
            let mut queue: VecDeque<Descriptor> = VecDeque::from([root.clone()]);
            let mut seen = BTreeSet::new();
            while let Some(d) = queue.pop_front() {
                if !seen.insert(d.digest.clone()) {
                    continue;
                }
                let Some(&e) = index_of.get(&d.digest) else {
                    continue;
                };
                entries.push(e);
                if !entry_ok[e] {
                    need.extend(
                        self.volumes_of(e)
                            .into_iter()
                            .filter(|v| missing.contains(v)),
                    );
                    continue;
                }
                if self.manifest.entries[e].kind == EntryKind::Manifest {
                    let desc = self.manifest.entries[e].descriptor();
                    match manifests.get(&d.digest).map(|b| children_of(&desc, b)) {
                        Some(Ok(children)) => queue.extend(children.descriptors),
                        // Present but unreadable: the image cannot be completed from these volumes.
                        _ => need.extend(self.volumes_of(e)),
                    }
                }
            }
            if need.is_empty() {
                complete.insert(root.digest.clone());
                for e in entries {
                    include[e] = true;
                }
            } else {
                self.waiting.push(WaitingImage {
                    name,
                    volumes: need.into_iter().collect(),
                });
            }
        }
        self.include = include;
        // index.json of the complete images only.
        let mut index: serde_json::Value =
            serde_json::from_slice(&self.metadata[1].1).map_err(|e| VolumeError::Corrupt {
                file: PathBuf::new(),
                label: "index.json".into(),
                why: e.to_string(),
            })?;
        if let Some(list) = index.get_mut("manifests").and_then(|m| m.as_array_mut()) {
            list.retain(|m| {
                m.get("digest")
                    .and_then(|d| d.as_str())
                    .and_then(|d| d.parse::<Digest>().ok())
                    .is_some_and(|d| complete.contains(&d))
            });
        }
        let mut bytes = serde_json::to_vec(&index).unwrap_or_default();
        bytes.push(b'\n');
        self.metadata[1].1 = bytes;
        Ok(())
    }

    /// Rebuilds data volumes found damaged by a check (number, what is wrong)
    /// from parity, when there is enough of it; those it cannot rebuild are
    /// then missing ([`VolumeSet::missing`]).
    pub fn rebuild_damaged(&mut self, damaged: &[(u32, String)]) -> Result<(), VolumeError> {
        let todo: Vec<(u32, String)> = damaged
            .iter()
            .filter(|(i, _)| !self.rebuilt.iter().any(|r| r.index == *i))
            .map(|(i, why)| (*i, format!("damaged ({why})")))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        self.repair(&[], &todo)?;
        for (i, _) in &todo {
            if !self.rebuilt.iter().any(|r| r.index == *i) {
                self.data[*i as usize - 1] = None;
            }
        }
        if self.data.iter().any(Option::is_none) && self.waiting.is_empty() {
            self.plan_partial()?;
        }
        Ok(())
    }

    /// Missing data volume numbers (beyond repair).
    pub fn missing(&self) -> Vec<u32> {
        (1..=self.header.data_volumes)
            .filter(|i| self.data[*i as usize - 1].is_none())
            .collect()
    }

    /// A one-line description of what is missing, for errors.
    pub fn missing_message(&self) -> Option<String> {
        let missing = self.missing();
        if missing.is_empty() {
            return None;
        }
        let mut lines = vec![format!(
            "data volume(s) {} of {} missing or damaged, more than the {} usable parity volume(s) rebuild",
            numbers(&missing),
            self.header.data_volumes,
            self.usable_parity()
        )];
        for w in &self.waiting {
            lines.push(format!(
                "{} waits for volume(s) {}",
                w.name,
                numbers(&w.volumes)
            ));
        }
        Some(lines.join("; "))
    }

    /// The logical package: the single package's uncompressed tar (only the
    /// complete images when some wait), read volume by volume.
    pub fn reader(&mut self) -> LogicalTar<'_> {
        let mut pending = Vec::new();
        for (name, data) in &self.metadata {
            push_entry(&mut pending, name, data);
        }
        LogicalTar {
            set: self,
            pending: VecDeque::from(pending),
            next_volume: 0,
            current: None,
            item: 0,
            left: 0,
            hasher: None,
            verify_parts: false,
            in_item: false,
            ended: false,
            list: String::new(),
        }
    }

    /// Total bytes of the data volume files (for progress).
    pub fn total_bytes(&self) -> u64 {
        self.data
            .iter()
            .flatten()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Every volume file found, by role and number.
    pub fn files(&self) -> Vec<(Role, u32, PathBuf)> {
        let mut v: Vec<(Role, u32, PathBuf)> = self
            .found
            .iter()
            .map(|((r, i), p)| (*r, *i, p.clone()))
            .collect();
        v.sort_by_key(|(r, i, _)| (*r == Role::Parity, *i));
        v
    }
}

fn empty_manifest() -> PackageManifest {
    PackageManifest {
        schema: String::new(),
        created_by: crate::pack::manifest::CreatedBy {
            tool: String::new(),
            options: BTreeMap::new(),
        },
        index_json: crate::pack::manifest::Pinned {
            digest: Digest::sha256_of(b""),
            size: 0,
        },
        images: Vec::new(),
        referrers: Vec::new(),
        entries: Vec::new(),
        extra: BTreeMap::new(),
    }
}

fn push_entry(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    let h = canonical_header(name, data.len() as u64).expect("a short path");
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&[0u8; BLOCK as usize][..padding(data.len() as u64)]);
}

fn sha256_file(path: &Path) -> Result<Digest, VolumeError> {
    ferry_store::file_hash::digest_file(path, ferry_store::Algorithm::Sha256).map_err(io_at(path))
}

/// The logical package tar of a set (see [`VolumeSet::reader`]).
pub struct LogicalTar<'s> {
    set: &'s mut VolumeSet,
    pending: VecDeque<u8>,
    next_volume: usize,
    current: Option<OpenVolume>,
    item: usize,
    left: u64,
    hasher: Option<Hasher>,
    /// Also hash every part against its own digest (names the volume of a bad part).
    pub verify_parts: bool,
    in_item: bool,
    ended: bool,
    list: String,
}

fn bad(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl LogicalTar<'_> {
    /// Moves to the next item (or volume); false at the end.
    fn advance(&mut self) -> io::Result<bool> {
        loop {
            if self.current.is_some() {
                let items = self.current.as_ref().map_or(0, |v| v.header.items.len());
                if self.item < items {
                    let next = self.cursor_op(TarCursor::next_entry)?;
                    let v = self.current.as_ref().expect("open");
                    let item = v.header.items[self.item].clone();
                    let (name, size) = next.ok_or_else(|| {
                        bad(format!("{}: {} is missing", v.path.display(), item.path))
                    })?;
                    if name != item.path || size != item.size {
                        return Err(bad(format!(
                            "{}: entry {name:?} where {} belongs",
                            v.path.display(),
                            item.path
                        )));
                    }
                    let entry = &self.set.manifest.entries[item.entry as usize];
                    if item.part == 1 && self.set.include[item.entry as usize] {
                        let h = canonical_header(&entry.path, entry.size)
                            .map_err(|e| bad(e.to_string()))?;
                        self.pending.extend(h.as_bytes());
                    }
                    self.left = size;
                    // The bytes come from checked zstd frames (or volumes checked
                    // whole); every entry, rejoined, is checked against its digest by
                    // whoever reads the logical package (importer, push engine and
                    // audit verify every blob). Parts are hashed only with `verify_parts`.
                    self.hasher = (self.verify_parts && item.parts > 1)
                        .then(|| Hasher::new(item.digest.algorithm()));
                    self.in_item = true;
                    return Ok(true);
                }
                // End of this volume: the trailer and the content digest.
                if self.cursor_op(TarCursor::next_entry)?.is_some() {
                    let v = self.current.as_ref().expect("open");
                    return Err(bad(format!(
                        "{}: an entry not listed in its header",
                        v.path.display()
                    )));
                }
                self.cursor_op(TarCursor::finish)?;
                let v = self.current.as_ref().expect("open");
                let mut list = String::new();
                for (name, data) in &v.metadata {
                    list.push_str(&super::content_line(
                        name,
                        &Digest::sha256_of(data),
                        data.len() as u64,
                    ));
                }
                list.push_str(&self.list);
                if Digest::sha256_of(list.as_bytes()) != v.header.content_digest {
                    return Err(bad(format!(
                        "{}: its content digest does not match",
                        v.path.display()
                    )));
                }
                self.current = None;
            }
            // The next present volume.
            let n = self.set.data.len();
            while self.next_volume < n && self.set.data[self.next_volume].is_none() {
                self.next_volume += 1;
            }
            if self.next_volume == n {
                if !self.ended {
                    self.pending.extend([0u8; TRAILER as usize]);
                    self.ended = true;
                }
                return Ok(false);
            }
            let path = self.set.data[self.next_volume].clone().expect("present");
            self.next_volume += 1;
            let v = match open_volume(&path) {
                Ok(v) => v,
                Err(e) => {
                    let index = self.next_volume as u32;
                    self.repair_now(index, e.to_string())?;
                    let path = self.set.data[index as usize - 1].clone().expect("rebuilt");
                    open_volume(&path).map_err(|e| bad(e.to_string()))?
                }
            };
            if v.header.set_id != self.set.set_id {
                return Err(bad(format!("{}: a volume of another set", path.display())));
            }
            self.current = Some(v);
            self.item = 0;
            self.list.clear();
        }
    }

    /// Rebuilds data volume `index` found damaged while reading (and any
    /// other damaged one), or fails naming it.
    fn repair_now(&mut self, index: u32, why: String) -> io::Result<()> {
        let before = self.set.rebuilt.len();
        if self.set.usable_parity() > 0 {
            self.set
                .repair(&[], &[(index, format!("damaged ({why})"))])
                .map_err(|e| bad(e.to_string()))?;
        }
        if self.set.rebuilt.len() == before || self.set.data[index as usize - 1].is_none() {
            let file = self
                .set
                .found
                .get(&(Role::Data, index))
                .cloned()
                .unwrap_or_default();
            return Err(bad(format!(
                "{}: data volume {index} of {} is damaged ({why}) and parity cannot rebuild it",
                file.display(),
                self.set.header.data_volumes
            )));
        }
        Ok(())
    }

    /// Runs `op` on the current volume's cursor; when the volume turns out
    /// damaged (a frame fails its check: none of its bytes were handed on),
    /// rebuilds it from parity and runs `op` again from the same decoded offset.
    fn cursor_op<T>(
        &mut self,
        mut op: impl FnMut(&mut TarCursor) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut repaired = false;
        loop {
            let v = self.current.as_mut().expect("an open volume");
            match op(&mut v.cursor) {
                Ok(t) => return Ok(t),
                Err(e) if !repaired && e.kind() == io::ErrorKind::InvalidData => {
                    let index = self.next_volume as u32;
                    self.repair_now(index, e.to_string())?;
                    let path = self.set.data[index as usize - 1].clone().expect("rebuilt");
                    let r = decoded(&path)?;
                    self.current
                        .as_mut()
                        .expect("an open volume")
                        .cursor
                        .resume(r)?;
                    repaired = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn item_done(&mut self) -> io::Result<()> {
        let v = self.current.as_mut().expect("an open volume");
        let item = v.header.items[self.item].clone();
        self.in_item = false;
        let actual = match self.hasher.take() {
            Some(h) => h.finish(),
            None => item.digest.clone(),
        };
        if actual != item.digest {
            return Err(bad(format!(
                "{}: {}: its bytes hash to {actual}, not {}",
                v.path.display(),
                item.path,
                item.digest
            )));
        }
        self.cursor_op(|c| c.skip_padding(item.size))?;
        self.list
            .push_str(&super::content_line(&item.path, &actual, item.size));
        let entry = &self.set.manifest.entries[item.entry as usize];
        if item.part == item.parts && self.set.include[item.entry as usize] {
            self.pending
                .extend(&[0u8; BLOCK as usize][..padding(entry.size)]);
        }
        self.item += 1;
        Ok(())
    }
}

impl Read for LogicalTar<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.pending.is_empty() {
                let n = buf.len().min(self.pending.len());
                for (i, b) in self.pending.drain(..n).enumerate() {
                    buf[i] = b;
                }
                return Ok(n);
            }
            if self.in_item {
                if self.left == 0 {
                    self.item_done()?;
                    continue;
                }
                let include = {
                    let v = self.current.as_ref().expect("open");
                    self.set.include[v.header.items[self.item].entry as usize]
                };
                let want = self.left.min(buf.len() as u64).min(1 << 20) as usize;
                let n = self.cursor_op(|c| c.some(&mut buf[..want]))?;
                if let Some(h) = self.hasher.as_mut() {
                    h.update(&buf[..n]);
                }
                self.left -= n as u64;
                if include {
                    return Ok(n);
                }
                continue;
            }
            if !self.advance()? && self.pending.is_empty() {
                return Ok(0);
            }
        }
    }
}
