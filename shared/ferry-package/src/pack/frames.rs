//! The compressed (or plain) output of a package, cut at entry boundaries.
//!
//! - zstd: the seekable format. Every entry starts a new frame and no frame
//!   holds more than [`ZSTD_FRAME_MAX`] bytes of input, so any entry is found
//!   from the seek table without decoding the rest, and frames decode in
//!   parallel. Frames are compressed on several threads and written in order;
//!   the bytes do not depend on the thread count (each frame is compressed
//!   alone with fixed parameters). An entry that is already compressed (gzip
//!   or zstd layers: recompressing them gains nothing and costs the most CPU)
//!   is framed in stored ("raw") blocks instead, which any zstd decoder reads.
//!   The seek table is a skippable frame at the end: `zstd -d` skips it.
//! - xz: one stream, a block per entry (and every [`XZ_BLOCK_MAX`] bytes),
//!   from liblzma's multi-threaded encoder, whose output does not depend on
//!   the thread count; xz's own index locates every block.
//! - none: the tar as is.
//!
//! Every byte written out is hashed (the package's sha256) on the way.
//! Memory: at most `threads + 2` zstd frames (4 MiB in, up to 4 MiB out) in
//! flight; threads are capped at the machine's cores by the caller.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use ferry_store::hash_pool::HashBehind;
use ferry_store::Digest;

/// Most input bytes in one zstd frame.
pub const ZSTD_FRAME_MAX: usize = 4 << 20;
/// Most input bytes in one xz block.
pub const XZ_BLOCK_MAX: u64 = 8 << 20;
/// Magic of a zstd skippable frame holding a seek table.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Magic ending a seek table.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;

/// How the package is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd seekable, at this level.
    Zstd {
        /// zstd compression level.
        level: i32,
    },
    /// xz multi-block, at this preset.
    Xz {
        /// xz preset (0 to 9).
        preset: u32,
    },
    /// A plain tar.
    None,
}

impl Compression {
    /// The file name suffix (`tar.zst`, `tar.xz`, `tar`).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::Zstd { .. } => "tar.zst",
            Compression::Xz { .. } => "tar.xz",
            Compression::None => "tar",
        }
    }

    /// The options that change the bytes, for the package manifest.
    pub fn describe(self) -> Vec<(&'static str, String)> {
        match self {
            Compression::Zstd { level } => vec![
                ("compression", "zstd-seekable".into()),
                ("zstd_level", level.to_string()),
                ("zstd_frame_max", ZSTD_FRAME_MAX.to_string()),
                (
                    "zstd_stored",
                    "layers already gzip or zstd compressed".into(),
                ),
            ],
            Compression::Xz { preset } => vec![
                ("compression", "xz".into()),
                ("xz_preset", preset.to_string()),
                ("xz_block_max", XZ_BLOCK_MAX.to_string()),
            ],
            Compression::None => vec![("compression", "none".into())],
        }
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct FramedSummary {
    /// Bytes written out.
    pub bytes: u64,
    /// sha256 of them, when asked for.
    pub sha256: Option<Digest>,
    /// zstd frames or xz blocks written (1 for a plain tar).
    pub frames: u64,
}

/// The package's output, fed the uncompressed tar.
pub trait FramedOutput {
    /// Appends tar bytes.
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Ends the current frame or block here (a new entry starts).
    fn boundary(&mut self) -> io::Result<()>;
    /// [`FramedOutput::boundary`] for an entry whose data is already
    /// compressed: its frames are stored, not compressed (zstd); the same as
    /// `boundary` for the other formats.
    fn boundary_stored(&mut self) -> io::Result<()> {
        self.boundary()
    }
    /// Ends the output: seek table, stream footer.
    fn finish(self: Box<Self>) -> io::Result<FramedSummary>;
}

/// Opens the output for `compression` over `out`, compressing on `threads`;
/// with `checksum`, the sha256 of every byte written (a whole-file hash costs
/// a core-second per 1.7 GB, so it is asked for, not implied).
pub fn framed_output(
    compression: Compression,
    out: Box<dyn Write + Send>,
    threads: usize,
    checksum: bool,
) -> io::Result<Box<dyn FramedOutput>> {
    let out = HashingWriter::new(out, checksum);
    Ok(match compression {
        Compression::Zstd { level } => Box::new(ZstdSeekable::new(level, out, threads.max(1))),
        Compression::Xz { preset } => Box::new(XzBlocks::new(preset, out, threads.max(1))?),
        Compression::None => Box::new(Plain { out }),
    })
}

/// Counts (and, when asked, hashes) what it writes. The hash runs on a thread
/// of its own, a few MiB behind the writes (`HashBehind`): the sha256 of a
/// whole file costs about a core-second per 1.7 GB, which would otherwise sit
/// on the writer's path while the machine's other core waits.
struct HashingWriter {
    inner: Box<dyn Write + Send>,
    hasher: Option<HashBehind>,
    bytes: u64,
}

impl HashingWriter {
    fn new(inner: Box<dyn Write + Send>, checksum: bool) -> HashingWriter {
        HashingWriter {
            inner,
            hasher: checksum.then(HashBehind::start),
            bytes: 0,
        }
    }

    fn finish(mut self, frames: u64) -> io::Result<FramedSummary> {
        self.inner.flush()?;
        Ok(FramedSummary {
            bytes: self.bytes,
            sha256: self.hasher.take().map(HashBehind::finish),
            frames,
        })
    }
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Plain {
    out: HashingWriter,
}

impl FramedOutput for Plain {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)
    }
    fn boundary(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> io::Result<FramedSummary> {
        self.out.finish(1)
    }
}

/// One compressed frame, in sequence.
struct Done {
    seq: u64,
    compressed: io::Result<Vec<u8>>,
    decompressed: u32,
}

/// zstd seekable output: frames compressed by workers, written in order by
/// one writer thread that also builds the seek table.
struct ZstdSeekable {
    current: Vec<u8>,
    next_seq: u64,
    jobs: Option<SyncSender<(u64, Vec<u8>, bool)>>,
    /// The current entry's frames are stored, not compressed.
    stored: bool,
    /// One token per frame allowed in flight (taken to submit, returned when written).
    tokens: Receiver<()>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<FramedSummary>>>,
}

impl ZstdSeekable {
    fn new(level: i32, out: HashingWriter, threads: usize) -> ZstdSeekable {
        let in_flight = threads + 2;
        let (token_tx, tokens) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            token_tx.send(()).expect("room for every token");
        }
        let (jobs_tx, jobs_rx) = sync_channel::<(u64, Vec<u8>, bool)>(threads);
        let jobs_rx = std::sync::Arc::new(std::sync::Mutex::new(jobs_rx));
        let (done_tx, done_rx) = sync_channel::<Done>(in_flight);
        let workers = (0..threads)
            .map(|_| {
                let jobs_rx = jobs_rx.clone();
                let done_tx = done_tx.clone();
                std::thread::spawn(move || {
                    let mut compressor = zstd_frame_compressor(level);
                    loop {
                        let job = jobs_rx.lock().map(|rx| rx.recv());
                        let Ok(Ok((seq, input, stored))) = job else {
                            return;
                        };
                        let compressed = match &mut compressor {
                            _ if stored => Ok(stored_frame(&input)),
                            Ok(c) => c.compress(&input),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        let done = Done {
                            seq,
                            compressed,
                            decompressed: input.len() as u32,
                        };
                        if done_tx.send(done).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        drop(done_tx);
        let writer = std::thread::spawn(move || write_in_order(out, done_rx, token_tx));
        ZstdSeekable {
            current: Vec::with_capacity(ZSTD_FRAME_MAX),
            next_seq: 0,
            jobs: Some(jobs_tx),
            stored: false,
            tokens,
            workers,
            writer: Some(writer),
        }
    }

    fn submit(&mut self) -> io::Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let frame = std::mem::replace(&mut self.current, Vec::with_capacity(ZSTD_FRAME_MAX));
        let sent = self.tokens.recv().is_ok()
            && self
                .jobs
                .as_ref()
                .is_some_and(|j| j.send((self.next_seq, frame, self.stored)).is_ok());
        self.next_seq += 1;
        if !sent {
            return Err(self.writer_failure());
        }
        Ok(())
    }

    /// The writer's error after it stopped early.
    fn writer_failure(&mut self) -> io::Error {
        self.jobs = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => e,
            _ => io::Error::other("the package writer thread stopped"),
        }
    }
}

/// Largest block of a zstd frame.
const ZSTD_BLOCK_MAX: usize = 128 << 10;

/// A zstd frame holding `input` in stored (raw) blocks: single segment, the
/// content size in 4 bytes, and the content checksum (low 32 bits of XXH64),
/// as RFC 8878 describes them. Costs a copy, no compression.
pub fn stored_frame(input: &[u8]) -> Vec<u8> {
    let blocks = input.len().div_ceil(ZSTD_BLOCK_MAX).max(1);
    let mut out = Vec::with_capacity(input.len() + 3 * blocks + 13);
    out.extend_from_slice(&0xFD2F_B528u32.to_le_bytes());
    // Frame header descriptor: 4-byte content size, single segment, checksum.
    out.push(0b1010_0100);
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    let mut chunks = input.chunks(ZSTD_BLOCK_MAX).peekable();
    if input.is_empty() {
        out.extend_from_slice(&[1, 0, 0]); // one empty raw block, the last
    }
    while let Some(chunk) = chunks.next() {
        let last = u32::from(chunks.peek().is_none());
        let header = (chunk.len() as u32) << 3 | last; // block type 0: raw
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(chunk);
    }
    let checksum = xxhash_rust::xxh64::xxh64(input, 0) as u32;
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

fn zstd_frame_compressor(level: i32) -> io::Result<zstd::bulk::Compressor<'static>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.include_checksum(true)?;
    c.include_contentsize(true)?;
    Ok(c)
}

/// Writes frames in sequence order and then the seek table.
fn write_in_order(
    mut out: HashingWriter,
    done: Receiver<Done>,
    tokens: SyncSender<()>,
) -> io::Result<FramedSummary> {
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    let mut table: Vec<(u32, u32, u32)> = Vec::new();
    for d in done {
        waiting.insert(d.seq, d);
        while let Some(d) = waiting.remove(&next) {
            let frame = d.compressed?;
            let compressed = u32::try_from(frame.len())
                .map_err(|_| io::Error::other("a zstd frame over 4 GiB"))?;
            // The frame's content checksum (low 32 bits of XXH64) is its last 4 bytes.
            let checksum = frame[frame.len() - 4..]
                .try_into()
                .map(u32::from_le_bytes)
                .unwrap_or(0);
            out.write_all(&frame)?;
            table.push((compressed, d.decompressed, checksum));
            next += 1;
            let _ = tokens.send(());
        }
    }
    let mut seek = Vec::with_capacity(table.len() * 12 + 17);
    seek.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    seek.extend_from_slice(&((table.len() * 12 + 9) as u32).to_le_bytes());
    for (c, d, x) in &table {
        seek.extend_from_slice(&c.to_le_bytes());
        seek.extend_from_slice(&d.to_le_bytes());
        seek.extend_from_slice(&x.to_le_bytes());
    }
    seek.extend_from_slice(&(table.len() as u32).to_le_bytes());
    seek.push(0x80); // checksums present
    seek.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    out.write_all(&seek)?;
    out.finish(table.len() as u64)
}

impl FramedOutput for ZstdSeekable {
    fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let room = ZSTD_FRAME_MAX - self.current.len();
            let take = room.min(bytes.len());
            self.current.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.current.len() == ZSTD_FRAME_MAX {
                self.submit()?;
            }
        }
        Ok(())
    }

    fn boundary(&mut self) -> io::Result<()> {
        self.submit()?;
        self.stored = false;
        Ok(())
    }

    fn boundary_stored(&mut self) -> io::Result<()> {
        self.submit()?;
        self.stored = true;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<FramedSummary> {
        self.submit()?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            _ => Err(io::Error::other("the package writer thread panicked")),
        }
    }
}

impl Drop for ZstdSeekable {
    fn drop(&mut self) {
        self.jobs = None;
    }
}

/// xz output: liblzma's multi-threaded encoder, a block barrier at every entry.
struct XzBlocks {
    stream: liblzma::stream::Stream,
    out: HashingWriter,
    buf: Vec<u8>,
    in_block: u64,
    blocks: u64,
}

impl XzBlocks {
    fn new(preset: u32, out: HashingWriter, threads: usize) -> io::Result<XzBlocks> {
        let stream = liblzma::stream::MtStreamBuilder::new()
            .threads(threads as u32)
            .block_size(XZ_BLOCK_MAX)
            .preset(preset)
            .check(liblzma::stream::Check::Crc64)
            .encoder()
            .map_err(io::Error::other)?;
        Ok(XzBlocks {
            stream,
            out,
            buf: Vec::with_capacity(1 << 20),
            in_block: 0,
            blocks: 0,
        })
    }

    fn run(&mut self, mut input: &[u8], action: liblzma::stream::Action) -> io::Result<()> {
        use liblzma::stream::{Action, Status};
        loop {
            self.buf.clear();
            let before = self.stream.total_in();
            let status = self
                .stream
                .process_vec(input, &mut self.buf, action)
                .map_err(io::Error::other)?;
            let used = (self.stream.total_in() - before) as usize;
            input = &input[used..];
            self.out.write_all(&self.buf)?;
            let done = match action {
                Action::Run => input.is_empty(),
                _ => status == Status::StreamEnd,
            };
            if done {
                return Ok(());
            }
        }
    }
}

impl FramedOutput for XzBlocks {
    fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        // Count block input ourselves so the block count is known (liblzma
        // also cuts every XZ_BLOCK_MAX bytes of a block).
        while !bytes.is_empty() {
            let room = (XZ_BLOCK_MAX - self.in_block) as usize;
            let take = room.min(bytes.len());
            self.run(&bytes[..take], liblzma::stream::Action::Run)?;
            self.in_block += take as u64;
            bytes = &bytes[take..];
            if self.in_block == XZ_BLOCK_MAX {
                self.blocks += 1;
                self.in_block = 0;
            }
        }
        Ok(())
    }

    fn boundary(&mut self) -> io::Result<()> {
        if self.in_block == 0 {
            return Ok(());
        }
        self.run(&[], liblzma::stream::Action::FullBarrier)?;
        self.blocks += 1;
        self.in_block = 0;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<FramedSummary> {
        if self.in_block > 0 {
            self.blocks += 1;
        }
        self.run(&[], liblzma::stream::Action::Finish)?;
        let blocks = self.blocks;
        self.out.finish(blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_frames_decode_to_their_input_and_carry_its_checksum() {
        for len in [
            0usize,
            1,
            ZSTD_BLOCK_MAX - 1,
            ZSTD_BLOCK_MAX,
            ZSTD_BLOCK_MAX + 1,
            ZSTD_FRAME_MAX,
        ] {
            let input: Vec<u8> = (0..len).map(|i| (i * 7 + i / 3) as u8).collect();
            let frame = stored_frame(&input);
            let back = zstd::bulk::decompress(&frame, ZSTD_FRAME_MAX).expect("a valid frame");
            assert!(back == input, "length {len}");
            let mut bad = frame.clone();
            if len > 0 {
                bad[8] ^= 1; // a data byte: the content checksum no longer matches
                assert!(
                    zstd::bulk::decompress(&bad, ZSTD_FRAME_MAX).is_err(),
                    "length {len}"
                );
            }
        }
    }
}
