//! One streaming decompression pass over a package file, with byte counting
//! for progress and a check that nothing follows the compressed stream.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::detect::Compression;
use crate::error::PackageError;

/// Memory liblzma may use for threaded decoding. The crate's default of 0
/// silently falls back to one thread; 64 MiB is too small for `xz -6` blocks.
const XZ_MEMLIMIT_THREADING: u64 = 256 << 20;
/// Largest zstd window accepted (`--long=31` packages).
const ZSTD_WINDOW_LOG_MAX: u32 = 31;

/// Counts bytes read from the raw package file (for progress and error offsets).
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    /// Counts what is read from `inner` into `count`.
    pub fn new(inner: R, count: Arc<AtomicU64>) -> CountingReader<R> {
        CountingReader { inner, count }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Raw = BufReader<CountingReader<File>>;

/// A decompressing reader over a package file (or, for a nested archive, over
/// an entry of one).
pub enum Decompressed<R: BufRead = Raw> {
    /// Plain tar.
    Plain(R),
    /// gzip, all members.
    Gzip(flate2::bufread::MultiGzDecoder<R>),
    /// xz, threaded decoder.
    Xz(liblzma::bufread::XzDecoder<R>),
    /// zstd, all frames.
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressed::Plain(r) => r.read(buf),
            Decompressed::Gzip(r) => r.read(buf),
            Decompressed::Xz(r) => r.read(buf),
            Decompressed::Zstd(r) => r.read(buf),
        }
    }
}

impl Decompressed<Raw> {
    /// Opens `path` for one decompressing pass; `count` receives raw bytes read.
    /// `xz_threads` decoder threads are used for multi-block xz; 1 picks the
    /// single-threaded decoder (memory: the dictionary only).
    pub fn open(
        path: &Path,
        compression: Compression,
        xz_threads: u32,
        count: Arc<AtomicU64>,
    ) -> Result<Decompressed, PackageError> {
        let file = File::open(path).map_err(|source| PackageError::Io {
            path: path.into(),
            source,
        })?;
        let raw = BufReader::with_capacity(1 << 20, CountingReader { inner: file, count });
        Decompressed::over(raw, compression, xz_threads).map_err(|e| PackageError::Corrupt {
            path: path.into(),
            format: "tar.xz",
            offset: 0,
            cause: e.to_string(),
        })
    }
}

impl<R: BufRead> Decompressed<R> {
    /// A decompressing reader over `raw` (see [`Decompressed::open`] for `xz_threads`).
    pub fn over(raw: R, compression: Compression, xz_threads: u32) -> io::Result<Decompressed<R>> {
        let corrupt =
            |e: &dyn std::fmt::Display| io::Error::new(io::ErrorKind::InvalidData, e.to_string());
        Ok(match compression {
            Compression::None => Decompressed::Plain(raw),
            Compression::Gzip => Decompressed::Gzip(flate2::bufread::MultiGzDecoder::new(raw)),
            Compression::Xz => {
                // One thread: liblzma's single-threaded decoder, which holds only
                // the dictionary (the threaded one with one worker still buffers
                // whole blocks).
                let stream = if xz_threads <= 1 {
                    liblzma::stream::Stream::new_stream_decoder(u64::MAX, 0)
                } else {
                    liblzma::stream::MtStreamBuilder::new()
                        .threads(xz_threads)
                        .memlimit_threading(XZ_MEMLIMIT_THREADING)
                        .memlimit_stop(u64::MAX)
                        .decoder()
                }
                .map_err(|e| corrupt(&e))?;
                Decompressed::Xz(liblzma::bufread::XzDecoder::new_stream(raw, stream))
            }
            Compression::Zstd => {
                let mut d =
                    zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| corrupt(&e))?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(|e| corrupt(&e))?;
                Decompressed::Zstd(d)
            }
        })
    }

    /// Reads to the end of the decompressed stream (checking its integrity
    /// trailer) and fails if any bytes follow the compressed stream.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        let trailing = match &mut self {
            Decompressed::Xz(r) => has_more(r.get_mut())?,
            // zstd and gzip decoders already treat trailing bytes as another frame/member and fail on garbage.
            _ => false,
        };
        if trailing {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "unexpected data after the end of the xz stream",
            ));
        }
        Ok(())
    }
}

fn has_more<R: BufRead>(r: &mut R) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        // xz allows stream padding (NUL bytes); anything else is garbage.
        if buf.iter().any(|&b| b != 0) {
            return Ok(true);
        }
        let n = buf.len();
        r.consume(n);
    }
}
