//! Reading one volume: its decoded tar bytes (zstd frames decoded whole and
//! checked before any of their bytes go on), its tar entries, and the check
//! of a volume on its own (`ferry-verify VOLUME`).

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ferry_store::{Digest, Hasher};

use crate::decompress::Decompressed;
use crate::detect::{detect_bytes, Compression, PackageFormat};
use crate::pack::manifest::PackageManifest;
use crate::pack::{tar_span, BLOCK};

use super::{
    content_line, set_id, Role, VolumeError, VolumeHeader, MAX_HEADER_BYTES, PARITY_ENTRY,
    VOLUME_HEADER,
};

const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Largest metadata entry of a volume (index.json, ferry-package.json).
const MAX_METADATA: u64 = 64 << 20;

/// Decodes a seekable zstd file frame by frame: each frame is decoded whole
/// and checked (its content checksum, and against the seek table) before any
/// of its bytes are returned.
struct FrameReader {
    file: BufReader<File>,
    table: Vec<(u32, u32, u32)>,
    next: usize,
    comp: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    dec: zstd::bulk::Decompressor<'static>,
}

fn bad(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

impl FrameReader {
    fn open(path: &Path) -> io::Result<FrameReader> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        if len < 17 {
            return Err(bad("too short for a seekable zstd file"));
        }
        let mut foot = [0u8; 9];
        f.seek(SeekFrom::Start(len - 9))?;
        f.read_exact(&mut foot)?;
        let le = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if le(&foot[5..9]) != SEEKABLE_MAGIC || foot[4] != 0x80 {
            return Err(bad("no zstd seek table at its end"));
        }
        let frames = le(&foot[..4]) as u64;
        let table_len = frames * 12 + 9;
        if table_len + 8 > len {
            return Err(bad("the zstd seek table is longer than the file"));
        }
        let mut raw = vec![0u8; (table_len + 8) as usize];
        f.seek(SeekFrom::Start(len - table_len - 8))?;
        f.read_exact(&mut raw)?;
        if le(&raw[..4]) != SKIPPABLE_MAGIC || le(&raw[4..8]) as u64 != table_len {
            return Err(bad("the zstd seek table's frame header is damaged"));
        }
        let table: Vec<(u32, u32, u32)> = raw[8..8 + frames as usize * 12]
            .chunks(12)
            .map(|c| (le(&c[..4]), le(&c[4..8]), le(&c[8..12])))
            .collect();
        let total: u64 = table.iter().map(|t| t.0 as u64).sum();
        if total + table_len + 8 != len {
            return Err(bad("the zstd seek table does not describe the file"));
        }
        f.seek(SeekFrom::Start(0))?;
        let (mut comp, mut out) = SPARE.with(|s| s.borrow_mut().take()).unwrap_or_default();
        comp.clear();
        out.clear();
        Ok(FrameReader {
            file: BufReader::with_capacity(1 << 20, f),
            table,
            next: 0,
            comp,
            out,
            pos: 0,
            dec: zstd::bulk::Decompressor::new()?,
        })
    }

    fn load(&mut self) -> io::Result<bool> {
        let Some(&(c, d, sum)) = self.table.get(self.next) else {
            return Ok(false);
        };
        self.comp.resize(c as usize, 0);
        self.file.read_exact(&mut self.comp)?;
        if c < 4 || self.comp[c as usize - 4..] != sum.to_le_bytes() {
            return Err(bad(format!(
                "zstd frame {} does not match the seek table",
                self.next
            )));
        }
        self.out.clear();
        self.out.reserve(d as usize);
        let n = self
            .dec
            .decompress_to_buffer(&self.comp, &mut self.out)
            .map_err(|e| bad(format!("zstd frame {}: {e}", self.next)))?;
        if n != d as usize {
            return Err(bad(format!(
                "zstd frame {} decodes to {n} bytes, the seek table says {d}",
                self.next
            )));
        }
        self.pos = 0;
        self.next += 1;
        Ok(true)
    }
}

thread_local! {
    /// The frame buffers of the last volume read on this thread, for the next
    /// (a set is read volume after volume: no fresh 8 MiB per volume).
    static SPARE: std::cell::RefCell<Option<(Vec<u8>, Vec<u8>)>> = const { std::cell::RefCell::new(None) };
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        let bufs = (
            std::mem::take(&mut self.comp),
            std::mem::take(&mut self.out),
        );
        SPARE.with(|s| *s.borrow_mut() = Some(bufs));
    }
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if !self.load()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The decoded tar bytes of a volume file.
pub fn decoded(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let mut head = [0u8; 512];
    let mut f = File::open(path)?;
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    match detect_bytes(&head[..n]) {
        Some(PackageFormat::Archive(Compression::Zstd)) => Ok(Box::new(FrameReader::open(path)?)),
        Some(PackageFormat::Archive(c @ Compression::Xz)) => {
            let raw = BufReader::with_capacity(1 << 20, File::open(path)?);
            Ok(Box::new(Decompressed::over(raw, c, 1)?))
        }
        Some(PackageFormat::Archive(Compression::None)) => Ok(Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(path)?,
        ))),
        _ => Err(bad("not a tar, tar.zst or tar.xz")),
    }
}

/// Walks a decoded tar, counting decoded bytes.
pub struct TarCursor {
    r: Box<dyn Read + Send>,
    /// Decoded bytes consumed.
    pub pos: u64,
}

impl TarCursor {
    /// Over `r`.
    pub fn new(r: Box<dyn Read + Send>) -> TarCursor {
        TarCursor { r, pos: 0 }
    }

    /// Replaces the decoder (a rebuilt copy of the same volume) and skips to where this one was.
    pub fn resume(&mut self, mut r: Box<dyn Read + Send>) -> io::Result<()> {
        io::copy(&mut (&mut r).take(self.pos), &mut io::sink()).and_then(|k| {
            if k == self.pos {
                Ok(())
            } else {
                Err(bad("the rebuilt volume is shorter"))
            }
        })?;
        self.r = r;
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes.
    pub fn exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.r.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bad("truncated")
            } else {
                e
            }
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Up to `buf.len()` bytes (0 at the end).
    pub fn some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(bad("truncated"));
        }
        self.pos += n as u64;
        Ok(n)
    }

    /// The next entry's path and size, or `None` at the trailer.
    pub fn next_entry(&mut self) -> io::Result<Option<(String, u64)>> {
        let mut block = [0u8; BLOCK as usize];
        self.exact(&mut block)?;
        if block.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let h = tar::Header::from_byte_slice(&block);
        let stored = h.cksum()?;
        let mut copy = h.clone();
        copy.set_cksum();
        if copy.cksum()? != stored {
            return Err(bad("a tar header's checksum is wrong"));
        }
        if h.entry_type() != tar::EntryType::Regular {
            return Err(bad("a tar entry is not a regular file"));
        }
        let path = h.path()?.to_string_lossy().into_owned();
        Ok(Some((path, h.entry_size()?)))
    }

    /// Reads `size` bytes of data to `f`, then the padding.
    pub fn data(&mut self, size: u64, buf: &mut [u8], f: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = self.some(&mut buf[..want])?;
            f(&buf[..n]);
            left -= n as u64;
        }
        self.skip_padding(size)
    }

    /// Skips the padding after an entry of `size`.
    pub fn skip_padding(&mut self, size: u64) -> io::Result<()> {
        let mut pad = [0u8; BLOCK as usize];
        self.exact(&mut pad[..crate::pack::padding(size)])
    }

    /// Reads a small entry whole.
    pub fn small(&mut self, size: u64, limit: u64) -> io::Result<Vec<u8>> {
        if size > limit {
            return Err(bad(format!("an entry of {size} bytes, over {limit}")));
        }
        let mut v = vec![0u8; size as usize];
        self.exact(&mut v)?;
        self.skip_padding(size)?;
        Ok(v)
    }

    /// The second trailer block and nothing but zeros after it (reads to the end,
    /// so the decoder checks its own trailer).
    pub fn finish(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = self.r.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(bad("data after the tar trailer"));
            }
        }
    }
}

/// A volume opened at its items: header and metadata read.
pub struct OpenVolume {
    /// Its file.
    pub path: PathBuf,
    /// Its header.
    pub header: VolumeHeader,
    /// `oci-layout`, `index.json`, `ferry-package.json` (data volumes).
    pub metadata: Vec<(String, Vec<u8>)>,
    /// The cursor, after the metadata.
    pub cursor: TarCursor,
}

/// Reads a volume's header (and, for a data volume, its metadata).
pub fn open_volume(path: &Path) -> Result<OpenVolume, VolumeError> {
    let not = |why: String| VolumeError::NotAVolume {
        file: path.to_path_buf(),
        why,
    };
    let mut cursor = TarCursor::new(decoded(path).map_err(|e| not(e.to_string()))?);
    let first = cursor.next_entry().map_err(|e| not(e.to_string()))?;
    let Some((name, size)) = first else {
        return Err(not("an empty tar".into()));
    };
    if name != VOLUME_HEADER {
        return Err(not(format!(
            "its first entry is {name:?}, not {VOLUME_HEADER}"
        )));
    }
    let bytes = cursor
        .small(size, MAX_HEADER_BYTES)
        .map_err(|e| not(e.to_string()))?;
    let header = VolumeHeader::parse(&bytes).map_err(not)?;
    let corrupt = |why: String| VolumeError::Corrupt {
        file: path.to_path_buf(),
        label: header.label(),
        why,
    };
    let mut metadata = Vec::new();
    if header.role == Role::Data {
        for want in [
            "oci-layout",
            "index.json",
            crate::pack::manifest::PACKAGE_MANIFEST,
        ] {
            let (name, size) = cursor
                .next_entry()
                .map_err(|e| corrupt(e.to_string()))?
                .ok_or_else(|| corrupt(format!("{want} is missing")))?;
            if name != want {
                return Err(corrupt(format!("entry {name:?} where {want} belongs")));
            }
            let data = cursor
                .small(size, MAX_METADATA)
                .map_err(|e| corrupt(e.to_string()))?;
            metadata.push((name, data));
        }
        let manifest = &metadata[2].1;
        let expected = set_id(
            manifest,
            header.volume_size,
            header.parity_volumes,
            header.data_volumes,
        );
        if expected != header.set_id {
            return Err(corrupt(format!(
                "its set id {} does not match its ferry-package.json (expected {expected})",
                header.set_id
            )));
        }
    }
    Ok(OpenVolume {
        path: path.to_path_buf(),
        header,
        metadata,
        cursor,
    })
}

/// What checking one volume found.
#[derive(Debug, Clone)]
pub struct VolumeCheck {
    /// Its header.
    pub header: VolumeHeader,
    /// Its size.
    pub file_bytes: u64,
    /// Items (data) or parity bytes checked.
    pub items: usize,
    /// Bytes checked.
    pub bytes: u64,
    /// What is wrong (empty: the volume is intact).
    pub problems: Vec<String>,
}

/// Checks one volume on its own: its header, every item's digest, its
/// content digest, its size, and nothing after its trailer.
pub fn check_volume(path: &Path) -> Result<VolumeCheck, VolumeError> {
    let file_bytes = std::fs::metadata(path)
        .map_err(|source| VolumeError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let mut v = open_volume(path)?;
    let mut check = VolumeCheck {
        header: v.header.clone(),
        file_bytes,
        items: 0,
        bytes: 0,
        problems: Vec::new(),
    };
    if file_bytes > v.header.volume_size {
        check.problems.push(format!(
            "{file_bytes} bytes, over the set's volume size of {}",
            v.header.volume_size
        ));
    }
    let mut buf = vec![0u8; 1 << 20];
    let result = match v.header.role {
        Role::Data => check_data(&mut v, &mut check, &mut buf),
        Role::Parity => check_parity(&mut v, &mut check, &mut buf),
    };
    if let Err(e) = result {
        check.problems.push(e.to_string());
    }
    Ok(check)
}

fn check_data(v: &mut OpenVolume, check: &mut VolumeCheck, buf: &mut [u8]) -> io::Result<()> {
    let manifest = PackageManifest::parse(&v.metadata[2].1).map_err(bad)?;
    let index = &v.metadata[1].1;
    if Digest::sha256_of(index) != manifest.index_json.digest {
        check
            .problems
            .push("index.json does not match the digest ferry-package.json pins".into());
    }
    let mut list = String::new();
    for (name, data) in &v.metadata {
        list.push_str(&content_line(
            name,
            &Digest::sha256_of(data),
            data.len() as u64,
        ));
    }
    let h = &v.header;
    let range = h
        .layout
        .get(h.index as usize - 1)
        .copied()
        .unwrap_or([0, 0]);
    for item in &h.items {
        let Some(entry) = manifest.entries.get(item.entry as usize) else {
            check.problems.push(format!(
                "{}: entry {} is not in ferry-package.json",
                item.path, item.entry
            ));
            continue;
        };
        if item.entry < range[0] || item.entry >= range[1] || !item.path.starts_with(&entry.path) {
            check
                .problems
                .push(format!("{}: does not match the set's layout", item.path));
        }
        let (name, size) = v
            .cursor
            .next_entry()?
            .ok_or_else(|| bad(format!("{} is missing (the tar ends early)", item.path)))?;
        if name != item.path || size != item.size {
            return Err(bad(format!(
                "entry {name:?} ({size} bytes) where {} ({} bytes) belongs",
                item.path, item.size
            )));
        }
        let mut hasher = Hasher::new(item.digest.algorithm());
        v.cursor.data(size, buf, &mut |b| hasher.update(b))?;
        let actual = hasher.finish();
        if actual != item.digest {
            check.problems.push(format!(
                "{}: its bytes hash to {actual}, not {}",
                item.path, item.digest
            ));
        }
        list.push_str(&content_line(&item.path, &actual, size));
        check.items += 1;
        check.bytes += size;
    }
    if let Some((name, _)) = v.cursor.next_entry()? {
        check
            .problems
            .push(format!("entry {name:?} is not listed in {VOLUME_HEADER}"));
        return Ok(());
    }
    v.cursor.finish()?;
    if Digest::sha256_of(list.as_bytes()) != h.content_digest {
        check
            .problems
            .push("its content digest does not match its items".into());
    }
    Ok(())
}

fn check_parity(v: &mut OpenVolume, check: &mut VolumeCheck, buf: &mut [u8]) -> io::Result<()> {
    let info = v
        .header
        .parity
        .clone()
        .ok_or_else(|| bad("a parity volume without parity info"))?;
    let (name, size) = v
        .cursor
        .next_entry()?
        .ok_or_else(|| bad(format!("{PARITY_ENTRY} is missing")))?;
    if name != PARITY_ENTRY || size != info.shard_bytes {
        return Err(bad(format!(
            "entry {name:?} ({size} bytes) where {PARITY_ENTRY} ({} bytes) belongs",
            info.shard_bytes
        )));
    }
    let mut hasher = Hasher::new(ferry_store::Algorithm::Sha256);
    v.cursor.data(size, buf, &mut |b| hasher.update(b))?;
    if hasher.finish() != v.header.content_digest {
        check.problems.push(format!(
            "its parity bytes do not match their digest {}",
            v.header.content_digest
        ));
    }
    check.items = 1;
    check.bytes = size;
    if let Some((name, _)) = v.cursor.next_entry()? {
        check
            .problems
            .push(format!("entry {name:?} is not listed in {VOLUME_HEADER}"));
        return Ok(());
    }
    v.cursor.finish()
}

/// Offset of a parity volume's parity bytes (after its header entry and the
/// parity entry's own header).
pub fn parity_offset(header_len: u64) -> u64 {
    tar_span(header_len) + BLOCK
}
