//! Planning a volume set before writing a byte: which entries (or parts of
//! entries) go into which volume, so that no volume file can exceed the
//! limit whatever the data. Each volume is budgeted with the compressor's
//! worst-case output for its frames or blocks (see [`Bound`]).

use crate::pack::frames::{XZ_BLOCK_MAX, ZSTD_FRAME_MAX};
use crate::pack::manifest::EntryRecord;
use crate::pack::{tar_span, Compression, PackagePlan, BLOCK};

use super::{
    data_name, part_path, DataFile, ParityInfo, Role, VolumeError, VolumeHeader, VolumeItem,
    VOLUME_SCHEMA,
};
use ferry_store::Digest;

/// Tar trailer.
pub const TRAILER: u64 = 2 * BLOCK;
/// Smallest part an entry is cut into (unless the volume is smaller still).
pub const MIN_PART: u64 = 64 << 10;

/// The worst-case compressed size of tar entries.
#[derive(Debug, Clone, Copy)]
pub struct Bound(pub Compression);

impl Bound {
    /// Worst-case bytes and frames (zstd) or blocks (xz) of an entry whose tar
    /// bytes (`span`) start at a boundary.
    pub fn entry(self, span: u64) -> (u64, u64) {
        let (chunk, per) = match self.0 {
            Compression::None => return (span, 0),
            Compression::Zstd { .. } => (ZSTD_FRAME_MAX as u64, zstd_bound as fn(u64) -> u64),
            Compression::Xz { .. } => (XZ_BLOCK_MAX, xz_block_bound as fn(u64) -> u64),
        };
        let (full, rest) = (span / chunk, span % chunk);
        let mut bytes = full * per(chunk);
        let mut units = full;
        if rest > 0 {
            bytes += per(rest);
            units += 1;
        }
        (bytes, units)
    }

    /// Bytes of the container around `units` frames or blocks (seek table; xz
    /// stream header, index and footer).
    pub fn container(self, units: u64) -> u64 {
        match self.0 {
            Compression::None => 0,
            Compression::Zstd { .. } => 8 + 12 * units + 9,
            // Stream header and footer, index indicator, record count, padding, CRC32.
            Compression::Xz { .. } => 12 + 12 + 1 + 9 + 3 + 4,
        }
    }
}

/// `ZSTD_compressBound`, plus a little slack.
fn zstd_bound(n: u64) -> u64 {
    zstd::zstd_safe::compress_bound(n as usize) as u64 + 8
}

/// liblzma's `lzma_block_buffer_bound` (LZMA2 falls back to stored chunks,
/// 3 header bytes per 64 KiB) plus the block's index record.
fn xz_block_bound(n: u64) -> u64 {
    const HEADERS_BOUND: u64 = 92;
    let lzma2 = n + n.div_ceil(1 << 16) * 3 + 1;
    HEADERS_BOUND + ((lzma2 + 3) & !3) + 18
}

/// One item of a planned volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedItem {
    /// Index into the package manifest's entries.
    pub entry: usize,
    /// Offset of the item's first byte within the entry's data.
    pub start: u64,
    /// Its size.
    pub size: u64,
    /// Part number from 1.
    pub part: u32,
    /// Parts of the entry.
    pub parts: u32,
    /// Its path in the volume.
    pub path: String,
}

/// The planned set.
#[derive(Debug, Clone)]
pub struct SetLayout {
    /// Data volumes and their items.
    pub volumes: Vec<Vec<PlannedItem>>,
    /// Largest data volume file allowed (the volume size less the room a
    /// parity volume needs for its own header).
    pub data_limit: u64,
}

impl SetLayout {
    /// `[first, end)` entry ranges of every volume.
    pub fn ranges(&self) -> Vec<[u32; 2]> {
        self.volumes
            .iter()
            .map(|items| match (items.first(), items.last()) {
                (Some(a), Some(b)) => [a.entry as u32, b.entry as u32 + 1],
                _ => [0, 0],
            })
            .collect()
    }
}

fn placeholder() -> Digest {
    Digest::sha256_of(b"")
}

/// A digest of `d`'s algorithm (part digests use their entry's algorithm).
fn placeholder_like(d: &Digest) -> Digest {
    let a = d.algorithm();
    Digest::new(a, &"0".repeat(a.hex_len())).unwrap_or_else(|_| d.clone())
}

/// Digits of the part numbers of an entry of `size` bytes.
fn part_width(size: u64, min_part: u64) -> usize {
    (size / min_part + 1).to_string().len().max(3)
}

/// A header with the shape (and at least the length) of the real one.
pub fn header_template(
    plan: &PackagePlan,
    compression: Compression,
    volume_size: u64,
    parity: u32,
    volumes: u32,
    role: Role,
) -> VolumeHeader {
    let e = plan.manifest.entries.len() as u32;
    VolumeHeader {
        schema: VOLUME_SCHEMA.into(),
        set_id: placeholder(),
        role,
        index: volumes.max(parity),
        data_volumes: volumes,
        parity_volumes: parity,
        volume_size,
        compression: compression_name(compression).into(),
        layout: vec![[e, e]; volumes as usize],
        content_digest: placeholder(),
        items: Vec::new(),
        data_files: Vec::new(),
        parity: None,
    }
}

/// The name recorded in headers.
pub fn compression_name(c: Compression) -> &'static str {
    match c {
        Compression::Zstd { .. } => "zstd-seekable",
        Compression::Xz { .. } => "xz",
        Compression::None => "none",
    }
}

/// Bytes a parity volume takes beyond its parity bytes' rounded length.
pub fn parity_overhead(plan: &PackagePlan, c: Compression, size: u64, parity: u32, n: u32) -> u64 {
    if parity == 0 {
        return 0;
    }
    let mut h = header_template(plan, c, size, parity, n, Role::Parity);
    let name = data_name("x", n, n, c.suffix());
    h.data_files = (0..n)
        .map(|_| DataFile {
            name: name.clone(),
            size,
            sha256: placeholder(),
        })
        .collect();
    h.parity = Some(ParityInfo {
        shard_bytes: size + 1,
        stripe: u32::MAX as u64,
        codec: super::parity::CODEC.into(),
    });
    // Header entry, parity entry header, its padding (and the even rounding), trailer.
    tar_span(h.to_bytes().len() as u64 + 256) + BLOCK + BLOCK + TRAILER
}

struct Open {
    json: u64,
    bytes: u64,
    units: u64,
    items: Vec<PlannedItem>,
}

struct Filler<'a> {
    entries: &'a [EntryRecord],
    bound: Bound,
    limit: u64,
    base_json: u64,
    fixed_bytes: u64,
    fixed_units: u64,
    min_part: u64,
}

impl Filler<'_> {
    fn item_json(&self, item: &PlannedItem, parts_placeholder: u32) -> u64 {
        let e = &self.entries[item.entry];
        let whole = item.parts == 1 && item.part == 1;
        let v = VolumeItem {
            path: item.path.clone(),
            entry: item.entry as u32,
            digest: if whole {
                e.digest.clone()
            } else {
                placeholder_like(&e.digest)
            },
            size: item.size,
            offset: e.offset + item.start,
            part: item.part,
            parts: if whole { 1 } else { parts_placeholder },
        };
        serde_json::to_vec(&v)
            .map(|b| b.len() as u64 + 1)
            .unwrap_or(4096)
    }

    /// Worst-case size of `open` plus an item of `span` tar bytes and `json` header bytes.
    fn total(&self, open: &Open, span: u64, json: u64) -> u64 {
        let (hb, hu) = self.bound.entry(tar_span(open.json + json));
        let (ib, iu) = if span > 0 {
            self.bound.entry(span)
        } else {
            (0, 0)
        };
        hb + open.bytes
            + ib
            + self.fixed_bytes
            + self
                .bound
                .container(hu + open.units + iu + self.fixed_units)
    }

    fn fits(&self, open: &Open, item: &PlannedItem, parts_ph: u32) -> bool {
        self.total(open, tar_span(item.size), self.item_json(item, parts_ph)) <= self.limit
    }

    fn push(&self, open: &mut Open, item: PlannedItem, parts_ph: u32) {
        open.json += self.item_json(&item, parts_ph);
        let (b, u) = self.bound.entry(tar_span(item.size));
        open.bytes += b;
        open.units += u;
        open.items.push(item);
    }

    fn fresh(&self) -> Open {
        Open {
            json: self.base_json,
            bytes: 0,
            units: 0,
            items: Vec::new(),
        }
    }

    fn fill(&self) -> Result<Vec<Vec<PlannedItem>>, u64> {
        let mut done: Vec<Vec<PlannedItem>> = Vec::new();
        let mut open = self.fresh();
        let empty_room = self.limit.saturating_sub(self.total(&open, 0, 0));
        for (i, e) in self.entries.iter().enumerate() {
            let width = part_width(e.size, self.min_part);
            let ph = 10u32.pow(width as u32) - 1;
            let whole = PlannedItem {
                entry: i,
                start: 0,
                size: e.size,
                part: 1,
                parts: 1,
                path: e.path.clone(),
            };
            if self.fits(&open, &whole, 1) {
                self.push(&mut open, whole, 1);
                continue;
            }
            // Cut at the blob boundary when the entry fits whole in the next
            // volume and this one is nearly full anyway.
            let room = self.limit.saturating_sub(self.total(&open, 0, 0));
            if !open.items.is_empty()
                && room < empty_room / 16
                && self.fits(&self.fresh(), &whole, 1)
            {
                done.push(std::mem::replace(&mut open, self.fresh()).items);
                self.push(&mut open, whole, 1);
                continue;
            }
            let mut pos = 0u64;
            let mut part = 1u32;
            loop {
                let remaining = e.size - pos;
                let make = |s: u64| PlannedItem {
                    entry: i,
                    start: pos,
                    size: s,
                    part,
                    parts: ph,
                    path: part_path(&e.path, part, ph, width),
                };
                // Largest part that fits (fitting is monotonic in the size).
                let mut lo = 0u64;
                if self.fits(&open, &make(0), ph) {
                    let mut hi = remaining;
                    while lo < hi {
                        let mid = lo + (hi - lo).div_ceil(2);
                        if self.fits(&open, &make(mid), ph) {
                            lo = mid;
                        } else {
                            hi = mid - 1;
                        }
                    }
                }
                let s = lo;
                if s == remaining && (s > 0 || self.fits(&open, &make(0), ph)) {
                    self.push(&mut open, make(s), ph);
                    break;
                }
                if s >= self.min_part {
                    self.push(&mut open, make(s), ph);
                    pos += s;
                    part += 1;
                }
                if open.items.is_empty() {
                    return Err(self.total(&open, tar_span(self.min_part), 0));
                }
                done.push(std::mem::replace(&mut open, self.fresh()).items);
            }
        }
        if !open.items.is_empty() || done.is_empty() {
            done.push(open.items);
        }
        // Final part counts and paths.
        let mut parts: std::collections::HashMap<usize, u32> = std::collections::HashMap::new();
        for it in done.iter().flatten() {
            *parts.entry(it.entry).or_default() += 1;
        }
        for it in done.iter_mut().flatten() {
            let n = parts[&it.entry];
            let e = &self.entries[it.entry];
            it.parts = n;
            it.path = if n > 1 {
                part_path(&e.path, it.part, n, part_width(e.size, self.min_part))
            } else {
                e.path.clone()
            };
        }
        Ok(done)
    }
}

/// Plans the volumes of `plan` so that no file exceeds `volume_size`.
pub fn plan_volumes(
    plan: &PackagePlan,
    compression: Compression,
    volume_size: u64,
    parity: u32,
) -> Result<SetLayout, VolumeError> {
    let bound = Bound(compression);
    let mut fixed_bytes = 0;
    let mut fixed_units = 0;
    for (_, data) in plan.metadata_entries() {
        let (b, u) = bound.entry(tar_span(data.len() as u64));
        fixed_bytes += b;
        fixed_units += u;
    }
    let (tb, tu) = bound.entry(TRAILER);
    fixed_bytes += tb;
    fixed_units += tu;
    let mut n_est = 1u32;
    loop {
        let overhead = parity_overhead(plan, compression, volume_size, parity, n_est);
        let limit = volume_size.saturating_sub(overhead);
        let base =
            header_template(plan, compression, volume_size, parity, n_est, Role::Data).to_bytes();
        let filler = Filler {
            entries: &plan.manifest.entries,
            bound,
            limit,
            base_json: base.len() as u64 + 16,
            fixed_bytes,
            fixed_units,
            min_part: MIN_PART.min(limit / 8).max(1),
        };
        let volumes = filler.fill().map_err(|needed| VolumeError::TooSmall {
            size: volume_size,
            needed: needed + overhead,
        })?;
        if volumes.len() as u32 <= n_est {
            return Ok(SetLayout {
                volumes,
                data_limit: limit,
            });
        }
        n_est = volumes.len() as u32;
    }
}
