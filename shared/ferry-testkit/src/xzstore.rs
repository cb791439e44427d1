//! A `.xz` writer that stores data in LZMA2 *uncompressed* chunks, which is what
//! the real xz encoder emits for incompressible data anyway, at memory speed
//! instead of ~6 MB/s per core. Output is a standard `.xz` stream (CRC32 check)
//! that every decoder reads. In multi-block mode each block header records its
//! compressed and uncompressed sizes, like liblzma's multithreaded encoder, so
//! parallel decoders can split the work.

use std::io::{self, Write};

use flate2::Crc;

const MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
/// Stream flags: check type CRC32.
const FLAGS: [u8; 2] = [0, 0x01];
/// LZMA2 filter properties byte: 1 MiB dictionary (decoder memory).
const DICT_1MIB: u8 = 16;
const CHUNK: usize = 64 * 1024;

fn crc32(parts: &[&[u8]]) -> [u8; 4] {
    let mut c = Crc::new();
    for p in parts {
        c.update(p);
    }
    c.sum().to_le_bytes()
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn block_header(sizes: Option<(u64, u64)>) -> Vec<u8> {
    let mut h = vec![0u8, 0u8];
    if let Some((compressed, uncompressed)) = sizes {
        h[1] = 0x40 | 0x80;
        varint(&mut h, compressed);
        varint(&mut h, uncompressed);
    }
    h.extend_from_slice(&[0x21, 1, DICT_1MIB]);
    while h.len() % 4 != 0 {
        h.push(0);
    }
    h[0] = ((h.len() + 4) / 4 - 1) as u8;
    let crc = crc32(&[&h]);
    h.extend_from_slice(&crc);
    h
}

/// Streaming stored-xz writer; call [`StoredXzWriter::finish`] to complete the file.
pub(crate) struct StoredXzWriter<W: Write> {
    inner: W,
    /// `Some(n)`: blocks of `n` uncompressed bytes with sizes in their headers
    /// (buffered, bounded by `n`); `None`: one streamed block.
    block_size: Option<usize>,
    pending: Vec<u8>,
    records: Vec<(u64, u64)>,
    /// Single-block mode: (crc of data, uncompressed bytes, chunk bytes written, header length).
    open_block: Option<(Crc, u64, u64, u64)>,
}

impl<W: Write> StoredXzWriter<W> {
    pub(crate) fn new(mut inner: W, block_size: Option<u64>) -> io::Result<StoredXzWriter<W>> {
        inner.write_all(&MAGIC)?;
        inner.write_all(&FLAGS)?;
        inner.write_all(&crc32(&[&FLAGS]))?;
        let block_size = block_size.map(|b| b.max(CHUNK as u64) as usize);
        Ok(StoredXzWriter {
            inner,
            block_size,
            pending: Vec::with_capacity(block_size.unwrap_or(CHUNK)),
            records: Vec::new(),
            open_block: None,
        })
    }

    /// Writes LZMA2 uncompressed chunks for `data`; `first` resets the dictionary.
    fn write_chunks(inner: &mut W, data: &[u8], mut first: bool) -> io::Result<u64> {
        let mut written = 0;
        for chunk in data.chunks(CHUNK) {
            let len = (chunk.len() - 1) as u16;
            let control = if first { 0x01 } else { 0x02 };
            first = false;
            inner.write_all(&[control])?;
            inner.write_all(&len.to_be_bytes())?;
            inner.write_all(chunk)?;
            written += 3 + chunk.len() as u64;
        }
        Ok(written)
    }

    /// Ends the LZMA2 data (end marker), pads the block and writes its check.
    fn close_block(
        &mut self,
        chunk_bytes: u64,
        header_len: u64,
        uncompressed: u64,
        crc: [u8; 4],
    ) -> io::Result<()> {
        self.inner.write_all(&[0])?;
        let compressed = chunk_bytes + 1;
        let padding = (4 - compressed % 4) % 4;
        self.inner.write_all(&[0u8; 3][..padding as usize])?;
        self.inner.write_all(&crc)?;
        self.records
            .push((header_len + compressed + 4, uncompressed));
        Ok(())
    }

    fn flush_sized_block(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.pending);
        let n = data.len() as u64;
        let compressed = n + 3 * n.div_ceil(CHUNK as u64) + 1;
        let header = block_header(Some((compressed, n)));
        self.inner.write_all(&header)?;
        let chunk_bytes = Self::write_chunks(&mut self.inner, &data, true)?;
        self.close_block(chunk_bytes, header.len() as u64, n, crc32(&[&data]))?;
        self.pending = data;
        self.pending.clear();
        Ok(())
    }

    fn flush_stream_chunk(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (mut crc, mut n, mut chunk_bytes, header_len) = match self.open_block.take() {
            Some(state) => state,
            None => {
                let header = block_header(None);
                self.inner.write_all(&header)?;
                (Crc::new(), 0, 0, header.len() as u64)
            }
        };
        chunk_bytes += Self::write_chunks(&mut self.inner, &self.pending, n == 0)?;
        crc.update(&self.pending);
        n += self.pending.len() as u64;
        self.pending.clear();
        self.open_block = Some((crc, n, chunk_bytes, header_len));
        Ok(())
    }

    /// Completes the last block, the index and the stream footer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        match self.block_size {
            Some(_) => self.flush_sized_block()?,
            None => {
                self.flush_stream_chunk()?;
                if let Some((crc, n, chunk_bytes, header_len)) = self.open_block.take() {
                    self.close_block(chunk_bytes, header_len, n, crc.sum().to_le_bytes())?;
                }
            }
        }
        let mut index = vec![0u8];
        varint(&mut index, self.records.len() as u64);
        for &(unpadded, uncompressed) in &self.records {
            varint(&mut index, unpadded);
            varint(&mut index, uncompressed);
        }
        while index.len() % 4 != 0 {
            index.push(0);
        }
        let crc = crc32(&[&index]);
        index.extend_from_slice(&crc);
        self.inner.write_all(&index)?;
        let backward = ((index.len() / 4 - 1) as u32).to_le_bytes();
        self.inner.write_all(&crc32(&[&backward, &FLAGS]))?;
        self.inner.write_all(&backward)?;
        self.inner.write_all(&FLAGS)?;
        self.inner.write_all(b"YZ")?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for StoredXzWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let limit = self.block_size.unwrap_or(CHUNK);
        let n = buf.len().min(limit - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == limit {
            match self.block_size {
                Some(_) => self.flush_sized_block()?,
                None => self.flush_stream_chunk()?,
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn round_trip(data: &[u8], block: Option<u64>) -> Vec<u8> {
        let mut w = StoredXzWriter::new(Vec::new(), block).unwrap();
        for piece in data.chunks(10_000) {
            w.write_all(piece).unwrap();
        }
        let xz = w.finish().unwrap();
        let mut out = Vec::new();
        liblzma::read::XzDecoder::new(xz.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        xz
    }

    #[test]
    fn decodes_in_both_modes() {
        let data: Vec<u8> = (0..300_001u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for block in [None, Some(65_536), Some(100_000), Some(1 << 20)] {
            round_trip(&data, block);
            round_trip(&[], block);
            round_trip(&data[..1], block);
            round_trip(&data[..65_536], block);
        }
    }
}
