//! Estimates how many bytes a package unpacks to, before reading it, so an
//! export can fail early with the numbers instead of filling the disk.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::detect::{Compression, PackageFormat};

/// Best estimate of the unpacked (tar) size of a package, in bytes.
///
/// Uses the xz index, the zstd frame headers or the gzip size trailer when
/// they are readable, else the file size (image layers are already compressed,
/// so a package barely shrinks).
pub fn unpacked_size(path: &Path, format: PackageFormat) -> u64 {
    let file_size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let exact = match format {
        PackageFormat::LayoutDir => return dir_size(path),
        PackageFormat::Archive(Compression::None) => Some(file_size),
        PackageFormat::Archive(Compression::Xz) => xz_uncompressed_size(path),
        PackageFormat::Archive(Compression::Zstd) => zstd_uncompressed_size(path),
        PackageFormat::Archive(Compression::Gzip) => gzip_isize(path).map(|s| s.max(file_size)),
    };
    exact.unwrap_or(file_size)
}

fn dir_size(path: &Path) -> u64 {
    walkdir::WalkDir::new(path.join("blobs"))
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn gzip_isize(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::End(-4)).ok()?;
    let mut b = [0u8; 4];
    f.read_exact(&mut b).ok()?;
    Some(u32::from_le_bytes(b) as u64)
}

/// Sums the content sizes recorded in the headers of every zstd frame, hopping
/// from block header to block header (a few bytes read per 128 KiB block, so
/// memory and page-cache use stay tiny). `None` if any frame omits its size.
fn zstd_uncompressed_size(path: &Path) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let read = |at: u64, buf: &mut [u8]| f.read_exact_at(buf, at).ok();
    let (mut pos, mut total) = (0u64, 0u64);
    while pos < len {
        let mut magic = [0u8; 4];
        read(pos, &mut magic)?;
        let magic = u32::from_le_bytes(magic);
        if (0x184D_2A50..=0x184D_2A5F).contains(&magic) {
            let mut size = [0u8; 4];
            read(pos + 4, &mut size)?;
            pos += 8 + u32::from_le_bytes(size) as u64;
            continue;
        }
        if magic != 0xFD2F_B528 {
            return None;
        }
        let mut fhd = [0u8; 1];
        read(pos + 4, &mut fhd)?;
        let (fcs_flag, single_segment, checksum, dict_flag) = (
            fhd[0] >> 6,
            fhd[0] & 0x20 != 0,
            fhd[0] & 0x04 != 0,
            fhd[0] & 0x03,
        );
        let dict_len = [0u64, 1, 2, 4][dict_flag as usize];
        let fcs_len = match (fcs_flag, single_segment) {
            (0, false) => return None, // content size not recorded
            (0, true) => 1u64,
            (1, _) => 2,
            (2, _) => 4,
            _ => 8,
        };
        let fcs_at = pos + 5 + u64::from(!single_segment) + dict_len;
        let mut fcs = [0u8; 8];
        read(fcs_at, &mut fcs[..fcs_len as usize])?;
        let mut size = u64::from_le_bytes(fcs);
        if fcs_len == 2 {
            size += 256;
        }
        total = total.checked_add(size)?;
        pos = fcs_at + fcs_len;
        loop {
            let mut bh = [0u8; 4];
            read(pos, &mut bh[..3])?;
            let header = u32::from_le_bytes(bh);
            let (last, kind, block_size) =
                (header & 1 != 0, (header >> 1) & 3, (header >> 3) as u64);
            pos += 3 + if kind == 1 { 1 } else { block_size };
            if last {
                break;
            }
        }
        if checksum {
            pos += 4;
        }
    }
    Some(total)
}

/// Sums the uncompressed sizes recorded in the index of every xz stream.
fn xz_uncompressed_size(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let mut end = f.metadata().ok()?.len();
    let mut total = 0u64;
    for _ in 0..10_000 {
        if end == 0 {
            return Some(total);
        }
        // Skip stream padding (NUL words) between concatenated streams.
        let mut word = [0u8; 4];
        f.seek(SeekFrom::Start(end.checked_sub(4)?)).ok()?;
        f.read_exact(&mut word).ok()?;
        if word == [0; 4] {
            end -= 4;
            continue;
        }
        let mut footer = [0u8; 12];
        f.seek(SeekFrom::Start(end.checked_sub(12)?)).ok()?;
        f.read_exact(&mut footer).ok()?;
        if &footer[10..12] != b"YZ" {
            return None;
        }
        let index_size = (u32::from_le_bytes(footer[4..8].try_into().ok()?) as u64 + 1) * 4;
        if index_size > 64 << 20 {
            return None;
        }
        let index_start = end.checked_sub(12 + index_size)?;
        let mut index = vec![0u8; index_size as usize];
        f.seek(SeekFrom::Start(index_start)).ok()?;
        f.read_exact(&mut index).ok()?;
        let (blocks_size, uncompressed) = parse_xz_index(&index)?;
        total = total.checked_add(uncompressed)?;
        end = index_start.checked_sub(blocks_size)?.checked_sub(12)?;
    }
    None
}

/// Returns (total padded block size, total uncompressed size) of one xz index.
fn parse_xz_index(index: &[u8]) -> Option<(u64, u64)> {
    if index.first() != Some(&0) {
        return None;
    }
    let mut pos = 1;
    let records = read_varint(index, &mut pos)?;
    let (mut blocks, mut uncompressed) = (0u64, 0u64);
    for _ in 0..records {
        let unpadded = read_varint(index, &mut pos)?;
        let size = read_varint(index, &mut pos)?;
        blocks = blocks.checked_add(unpadded.checked_add(3)? & !3)?;
        uncompressed = uncompressed.checked_add(size)?;
    }
    Some((blocks, uncompressed))
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..9 {
        let b = *buf.get(*pos)?;
        *pos += 1;
        value |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn xz_index_gives_exact_size_single_and_multi_block() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
            .collect();
        for (name, threads) in [("single.xz", 1u32), ("multi.xz", 2)] {
            let stream = liblzma::stream::MtStreamBuilder::new()
                .threads(threads)
                .block_size(1 << 20)
                .preset(1)
                .encoder()
                .unwrap();
            let path = dir.path().join(name);
            let mut enc =
                liblzma::write::XzEncoder::new_stream(File::create(&path).unwrap(), stream);
            enc.write_all(&data).unwrap();
            enc.finish().unwrap();
            let size = unpacked_size(&path, PackageFormat::Archive(Compression::Xz));
            assert_eq!(size, data.len() as u64, "{name}");
        }
    }

    #[test]
    fn zstd_and_gzip_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 1_234_567];
        let zst = dir.path().join("p.zst");
        // Like the zstd CLI on a file: the frame header records the content size.
        std::fs::write(&zst, zstd::bulk::compress(&data, 3).unwrap()).unwrap();
        assert_eq!(
            unpacked_size(&zst, PackageFormat::Archive(Compression::Zstd)),
            data.len() as u64
        );
        // A streamed frame has no recorded size: fall back to the file size.
        let streamed = zstd::encode_all(&data[..], 3).unwrap();
        std::fs::write(&zst, &streamed).unwrap();
        assert_eq!(
            unpacked_size(&zst, PackageFormat::Archive(Compression::Zstd)),
            streamed.len() as u64
        );
        let gz = dir.path().join("p.gz");
        let mut e =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        assert_eq!(
            unpacked_size(&gz, PackageFormat::Archive(Compression::Gzip)),
            data.len() as u64
        );
    }

    #[test]
    fn garbage_falls_back_to_file_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.xz");
        std::fs::write(&p, b"not really xz at all, just bytes").unwrap();
        assert_eq!(
            unpacked_size(&p, PackageFormat::Archive(Compression::Xz)),
            32
        );
    }
}

/// Checks that `store_root`'s filesystem can take the rest of a package that
/// unpacks to `unpacked` bytes, counting blobs already in the store.
pub fn check_space(store_root: &Path, unpacked: u64) -> Result<(), crate::error::NotEnoughSpace> {
    let present = dir_size(store_root);
    // Headroom for index.json, the journal and filesystem overhead.
    let needed = unpacked.saturating_sub(present) + (unpacked / 100).max(1 << 20);
    let available = ferry_store::space::available_bytes(store_root).unwrap_or(u64::MAX);
    if needed > available {
        return Err(crate::error::NotEnoughSpace {
            dest: store_root.to_path_buf(),
            unpacked,
            present,
            needed,
            available,
        });
    }
    Ok(())
}
