//! Reed-Solomon parity over the data volume files, in stripes.
//!
//! The data files, padded virtually with zeros to the longest (rounded up to
//! even), are the original shards; stripe by stripe (at most
//! [`MAX_STRIPE`] bytes of each, and [`STRIPE_MEMORY`] for all), each parity
//! volume receives one recovery shard. Any `p` data files that are missing or
//! corrupt are rebuilt from the others and `p` parity volumes, stripe by
//! stripe, then checked against the sha256 the parity volume records.
//!
//! A parity volume is a plain tar (parity bytes do not compress):
//! `ferry-volume.json` then `ferry-parity.bin`. Its header records every data
//! file's name, size and sha256 and the sha256 of its own parity bytes; that
//! digest is written last, over a placeholder of the same length.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ferry_store::{Algorithm, Digest, Hasher};
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::pack::{canonical_header, padding, tar_span, BLOCK};

use super::layout::TRAILER;
use super::{DataFile, ParityInfo, VolumeError, VolumeHeader, PARITY_ENTRY, VOLUME_HEADER};

/// The codec named in headers.
pub const CODEC: &str = "reed-solomon-gf16-leopard";
/// Largest stripe per shard.
pub const MAX_STRIPE: u64 = 1 << 20;
/// Memory for one stripe of every shard.
pub const STRIPE_MEMORY: u64 = 256 << 20;

fn io_at(path: &Path) -> impl Fn(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn rs_err(path: &Path, e: reed_solomon_simd::Error) -> VolumeError {
    VolumeError::Io {
        path: path.to_path_buf(),
        source: io::Error::other(format!("Reed-Solomon: {e}")),
    }
}

/// The stripe for `shards` shards of `shard_bytes` each (even, a multiple of 64 when it can be).
pub fn stripe_for(shards: u64, shard_bytes: u64) -> u64 {
    let s = (STRIPE_MEMORY / shards.max(1)).min(MAX_STRIPE) / 64 * 64;
    s.max(64).min(shard_bytes.max(2))
}

/// Reads up to `buf.len()` bytes, zero-filling what the file lacks.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<()> {
    let n = ferry_store::read_ahead::read_up_to(r, buf)?;
    buf[n..].fill(0);
    Ok(())
}

/// Writes the parity volumes `outs` (temporary path, final path) over the
/// `data` files (path, record); returns each parity file's size.
pub fn write_parity(
    data: &[(PathBuf, DataFile)],
    template: &VolumeHeader,
    outs: &[(PathBuf, PathBuf)],
) -> Result<Vec<(u64, Option<Digest>)>, VolumeError> {
    let n = data.len();
    let p = outs.len();
    let longest = data.iter().map(|(_, d)| d.size).max().unwrap_or(0);
    let shard_bytes = (longest.max(2) + 1) & !1;
    let stripe = stripe_for((n + p) as u64, shard_bytes);
    let mut headers = Vec::new();
    let mut writers = Vec::new();
    for (j, (tmp, _)) in outs.iter().enumerate() {
        let mut h = template.clone();
        h.index = j as u32 + 1;
        h.items.clear();
        h.data_files = data.iter().map(|(_, d)| d.clone()).collect();
        h.parity = Some(ParityInfo {
            shard_bytes,
            stripe,
            codec: CODEC.into(),
        });
        h.content_digest = Digest::sha256_of(b"");
        let (mut w, on_disk) = crate::pack::disk::create(tmp).map_err(io_at(tmp))?;
        let bytes = h.to_bytes();
        let io = io_at(tmp);
        w.write_all(
            canonical_header(VOLUME_HEADER, bytes.len() as u64)
                .map_err(&io)?
                .as_bytes(),
        )
        .map_err(&io)?;
        w.write_all(&bytes).map_err(&io)?;
        w.write_all(&[0u8; BLOCK as usize][..padding(bytes.len() as u64)])
            .map_err(&io)?;
        w.write_all(
            canonical_header(PARITY_ENTRY, shard_bytes)
                .map_err(&io)?
                .as_bytes(),
        )
        .map_err(&io)?;
        headers.push(h);
        writers.push((w, Hasher::new(Algorithm::Sha256), on_disk));
    }
    let mut readers: Vec<Box<dyn Read>> = Vec::new();
    for (path, _) in data {
        let f = File::open(path).map_err(io_at(path))?;
        readers.push(Box::new(BufReader::with_capacity(1 << 20, f)));
    }
    let mut shards = vec![vec![0u8; stripe as usize]; n];
    let first = &outs[0].0;
    let mut encoder =
        ReedSolomonEncoder::new(n, p, stripe as usize).map_err(|e| rs_err(first, e))?;
    let mut done = 0u64;
    while done < shard_bytes {
        let len = stripe.min(shard_bytes - done) as usize;
        encoder.reset(n, p, len).map_err(|e| rs_err(first, e))?;
        for (i, r) in readers.iter_mut().enumerate() {
            fill(r.as_mut(), &mut shards[i][..len]).map_err(io_at(&data[i].0))?;
            encoder
                .add_original_shard(&shards[i][..len])
                .map_err(|e| rs_err(&data[i].0, e))?;
        }
        let result = encoder.encode().map_err(|e| rs_err(first, e))?;
        for (j, (w, h, _)) in writers.iter_mut().enumerate() {
            let shard = result
                .recovery(j)
                .expect("one recovery shard per parity volume");
            w.write_all(shard).map_err(io_at(&outs[j].0))?;
            h.update(shard);
        }
        done += len as u64;
    }
    let mut sizes = Vec::new();
    for (j, (mut w, h, on_disk)) in writers.into_iter().enumerate() {
        let tmp = &outs[j].0;
        let io = io_at(tmp);
        w.write_all(&[0u8; BLOCK as usize][..padding(shard_bytes)])
            .map_err(&io)?;
        w.write_all(&[0u8; TRAILER as usize]).map_err(&io)?;
        drop(w);
        let file = on_disk.written().map_err(&io)?;
        // The real digest over the placeholder (same length, same entry size).
        let mut h2 = headers[j].clone();
        h2.content_digest = h.finish();
        let bytes = h2.to_bytes();
        file.write_all_at(&bytes, BLOCK).map_err(&io)?;
        file.sync_all().map_err(&io)?;
        let size = tar_span(bytes.len() as u64) + tar_span(shard_bytes) + TRAILER;
        sizes.push((size, None));
    }
    Ok(sizes)
}

/// A parity volume usable for a rebuild: its number (from 1), file and the
/// offset of its parity bytes.
#[derive(Debug, Clone)]
pub struct ParitySource {
    /// Its number, from 1.
    pub index: u32,
    /// Its file.
    pub path: PathBuf,
    /// Offset of `ferry-parity.bin`'s data.
    pub offset: u64,
}

/// Rebuilds the data files `targets` (index from 0 → output path) from the
/// `present` ones (index → good file) and `parity`, then checks each against
/// its recorded size and sha256.
pub fn rebuild(
    files: &[DataFile],
    info: &ParityInfo,
    parity_total: u32,
    present: &[(usize, PathBuf)],
    parity: &[ParitySource],
    targets: &[(usize, PathBuf)],
) -> Result<(), VolumeError> {
    let n = files.len();
    let p = parity_total as usize;
    let shard_bytes = info.shard_bytes;
    let stripe = info.stripe.max(2);
    let first = targets.first().map(|t| t.1.clone()).unwrap_or_default();
    let mut readers: Vec<(usize, BufReader<File>)> = Vec::new();
    for (i, path) in present {
        readers.push((
            *i,
            BufReader::with_capacity(1 << 20, File::open(path).map_err(io_at(path))?),
        ));
    }
    let mut recov: Vec<(usize, BufReader<File>, &Path)> = Vec::new();
    for s in parity.iter().take(targets.len()) {
        let mut f = File::open(&s.path).map_err(io_at(&s.path))?;
        f.seek(SeekFrom::Start(s.offset)).map_err(io_at(&s.path))?;
        recov.push((
            s.index as usize - 1,
            BufReader::with_capacity(1 << 20, f),
            &s.path,
        ));
    }
    let mut outs: Vec<(usize, BufWriter<File>, u64, Hasher, &Path)> = Vec::new();
    for (i, path) in targets {
        let f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .map_err(io_at(path))?;
        outs.push((
            *i,
            BufWriter::with_capacity(1 << 20, f),
            files[*i].size,
            Hasher::new(Algorithm::Sha256),
            path,
        ));
    }
    let mut buf = vec![0u8; stripe as usize];
    let mut decoder =
        ReedSolomonDecoder::new(n, p, stripe as usize).map_err(|e| rs_err(&first, e))?;
    let mut done = 0u64;
    while done < shard_bytes {
        let len = stripe.min(shard_bytes - done) as usize;
        decoder.reset(n, p, len).map_err(|e| rs_err(&first, e))?;
        for (i, r) in readers.iter_mut() {
            fill(r, &mut buf[..len]).map_err(io_at(
                &present.iter().find(|x| x.0 == *i).expect("present").1,
            ))?;
            decoder
                .add_original_shard(*i, &buf[..len])
                .map_err(|e| rs_err(&first, e))?;
        }
        for (j, r, path) in recov.iter_mut() {
            fill(r, &mut buf[..len]).map_err(io_at(path))?;
            decoder
                .add_recovery_shard(*j, &buf[..len])
                .map_err(|e| rs_err(path, e))?;
        }
        let result = decoder.decode().map_err(|e| rs_err(&first, e))?;
        for (i, w, left, h, path) in outs.iter_mut() {
            let restored = result
                .restored_original(*i)
                .ok_or_else(|| VolumeError::Io {
                    path: path.to_path_buf(),
                    source: io::Error::other("Reed-Solomon: shard not restored"),
                })?;
            let take = (*left).min(len as u64) as usize;
            w.write_all(&restored[..take]).map_err(io_at(path))?;
            h.update(&restored[..take]);
            *left -= take as u64;
        }
        done += len as u64;
    }
    for (i, w, _, h, path) in outs {
        let f = w.into_inner().map_err(|e| io_at(path)(e.into_error()))?;
        f.sync_all().map_err(io_at(path))?;
        let actual = h.finish();
        if actual != files[i].sha256 {
            return Err(VolumeError::Corrupt {
                file: path.to_path_buf(),
                label: format!("rebuilt data volume {}", i + 1),
                why: format!(
                    "the rebuilt bytes hash to {actual}, not {} (a volume used for the rebuild is damaged too)",
                    files[i].sha256
                ),
            });
        }
    }
    Ok(())
}
