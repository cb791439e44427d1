//! Getting a package onto the disk durably at the disk's speed, with as
//! little CPU as the filesystem allows: what [`super::write_package`] writes
//! through.
//!
//! - [`DirectWriter`] (where the filesystem takes `O_DIRECT`, as ext4 and xfs
//!   do): the bytes are gathered into page-aligned 4 MiB buffers and written
//!   by a thread of its own straight from them to the disk, bypassing the page
//!   cache: no kernel copy of the package, no dirty pages for the kernel to
//!   write back later, and the disk works while the package is still being
//!   framed. The last, unaligned piece is written through the page cache.
//! - [`EarlyWriteback`] (elsewhere, tmpfs for one): ordinary writes, and a
//!   thread that flushes them to disk every 64 MiB (`fdatasync`) while
//!   writing goes on, so the final fsync does not pay all the disk time.
//!
//! Invariants: bytes land at the file offsets they were written in, in full,
//! or the write fails (the error shows at the next write or at
//! [`Finisher::finish`]); nothing is durable before `finish` returns `Ok`
//! (the file is fsynced there, whatever the path taken); memory is bounded
//! (three 4 MiB buffers).

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Bytes per direct write (a multiple of any logical block size).
const DIRECT_CHUNK: usize = 4 << 20;
/// Alignment of direct writes, in memory and in the file.
const ALIGN: usize = 4096;
/// Buffers in rotation: one being filled, two being written or waiting.
const DIRECT_BUFFERS: usize = 3;
/// Bytes written between two early flushes of [`EarlyWriteback`].
const WRITEBACK_EVERY: u64 = 64 << 20;

/// Waits for the writes of a package file to be done and makes it durable.
pub struct Finisher {
    file: File,
    io: Option<JoinHandle<io::Result<()>>>,
}

impl Finisher {
    /// Call after the writer is dropped: waits for its writes, then fsyncs.
    pub fn finish(self) -> io::Result<()> {
        self.written()?.sync_all()
    }

    /// Call after the writer is dropped: waits for its writes and gives the
    /// file back (for a last write in place), not yet fsynced.
    pub fn written(mut self) -> io::Result<File> {
        if let Some(io) = self.io.take() {
            io.join()
                .map_err(|_| io::Error::other("the package's disk writer panicked"))??;
        }
        Ok(self.file)
    }
}

/// Opens `path` (created, truncated) for writing a package: direct where
/// the filesystem takes it, else with early writeback. Drop the writer, then
/// [`Finisher::finish`].
pub fn create(path: &Path) -> io::Result<(Box<dyn Write + Send>, Finisher)> {
    create_as(path, true)
}

/// [`create`], or with early writeback only (`direct` false: what a
/// filesystem without direct I/O gets; the tests take both paths).
fn create_as(path: &Path, direct: bool) -> io::Result<(Box<dyn Write + Send>, Finisher)> {
    let file = File::create(path)?;
    let direct = if direct {
        File::options()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
    } else {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    };
    match direct {
        Ok(direct) => {
            let (writer, io) = DirectWriter::start(direct, file.try_clone()?);
            Ok((Box::new(writer), Finisher { file, io: Some(io) }))
        }
        // EINVAL: the filesystem has no direct I/O.
        Err(_) => {
            let writer = EarlyWriteback::new(file.try_clone()?, file.try_clone()?);
            Ok((
                Box::new(io::BufWriter::with_capacity(1 << 20, writer)),
                Finisher { file, io: None },
            ))
        }
    }
}

/// A page-aligned buffer of [`DIRECT_CHUNK`] bytes (inside a larger `Vec`).
struct Aligned {
    bytes: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let bytes = vec![0u8; DIRECT_CHUNK + ALIGN];
        let start = bytes.as_ptr().align_offset(ALIGN);
        Aligned { bytes, start }
    }
    fn slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + DIRECT_CHUNK]
    }
    fn filled(&self, len: usize) -> &[u8] {
        &self.bytes[self.start..self.start + len]
    }
}

/// One buffer to write at `offset`: `len` bytes; `last` for the unaligned tail.
struct Job {
    buffer: Aligned,
    offset: u64,
    len: usize,
    last: bool,
}

/// See the module doc.
pub struct DirectWriter {
    current: Option<Aligned>,
    len: usize,
    offset: u64,
    jobs: Option<SyncSender<Job>>,
    free: Receiver<Aligned>,
}

impl DirectWriter {
    fn start(direct: File, buffered: File) -> (DirectWriter, JoinHandle<io::Result<()>>) {
        let (jobs, queued) = sync_channel::<Job>(DIRECT_BUFFERS);
        let (give_back, free) = sync_channel::<Aligned>(DIRECT_BUFFERS);
        for _ in 1..DIRECT_BUFFERS {
            give_back
                .send(Aligned::new())
                .expect("room for every buffer");
        }
        let io = std::thread::spawn(move || {
            let mut direct_ok = true;
            for job in queued {
                let bytes = job.buffer.filled(job.len);
                if job.last || !direct_ok {
                    buffered.write_all_at(bytes, job.offset)?;
                } else {
                    match direct.write_all_at(bytes, job.offset) {
                        Ok(()) => {}
                        // A filesystem that opened with O_DIRECT but refuses the write.
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                            direct_ok = false;
                            buffered.write_all_at(bytes, job.offset)?;
                        }
                        Err(e) => return Err(e),
                    }
                }
                // The writer may be gone already (its last job): nothing to give back to.
                let _ = give_back.send(job.buffer);
            }
            Ok(())
        });
        (
            DirectWriter {
                current: Some(Aligned::new()),
                len: 0,
                offset: 0,
                jobs: Some(jobs),
                free,
            },
            io,
        )
    }

    fn stopped() -> io::Error {
        io::Error::other("the package's disk writer stopped (its error is reported at the end)")
    }

    /// Hands the current buffer to the disk thread and takes a free one.
    fn send(&mut self, last: bool) -> io::Result<()> {
        let buffer = self.current.take().expect("a buffer between sends");
        let job = Job {
            buffer,
            offset: self.offset,
            len: self.len,
            last,
        };
        self.offset += self.len as u64;
        self.len = 0;
        let jobs = self.jobs.as_ref().ok_or_else(Self::stopped)?;
        jobs.send(job).map_err(|_| Self::stopped())?;
        if !last {
            self.current = Some(self.free.recv().map_err(|_| Self::stopped())?);
        }
        Ok(())
    }
}

impl Write for DirectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let current = self.current.as_mut().ok_or_else(Self::stopped)?;
        let n = buf.len().min(DIRECT_CHUNK - self.len);
        current.slice()[self.len..self.len + n].copy_from_slice(&buf[..n]);
        self.len += n;
        if self.len == DIRECT_CHUNK {
            self.send(false)?;
        }
        Ok(n)
    }

    /// Nothing to do: a partly filled buffer is written when full or at the end.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        if self.current.is_some() && self.len > 0 {
            // An error here shows at Finisher::finish (the disk thread's result).
            let _ = self.send(true);
        }
        self.jobs = None;
    }
}

/// See the module doc.
pub struct EarlyWriteback {
    file: File,
    since: u64,
    flush: Option<SyncSender<()>>,
    flusher: Option<JoinHandle<()>>,
}

impl EarlyWriteback {
    fn new(file: File, for_flushes: File) -> EarlyWriteback {
        // One pending request at most: a flush asked while one runs covers both.
        let (flush, asked) = sync_channel::<()>(1);
        let flusher = std::thread::spawn(move || {
            while asked.recv().is_ok() {
                // An error here shows again at the final fsync, which fails the write.
                let _ = for_flushes.sync_data();
            }
        });
        EarlyWriteback {
            file,
            since: 0,
            flush: Some(flush),
            flusher: Some(flusher),
        }
    }
}

impl Write for EarlyWriteback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since += n as u64;
        if self.since >= WRITEBACK_EVERY {
            self.since = 0;
            if let Some(f) = &self.flush {
                let _ = f.try_send(());
            }
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for EarlyWriteback {
    fn drop(&mut self) {
        self.flush = None;
        if let Some(t) = self.flusher.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    /// Whatever the path (direct on the test's filesystem, or not), the file
    /// holds exactly the bytes written, for sizes around the chunk boundaries
    /// and writes of awkward lengths.
    #[test]
    fn the_file_holds_exactly_the_bytes_written() {
        let dir = tempfile::tempdir().unwrap();
        for size in [
            0,
            1,
            ALIGN - 1,
            DIRECT_CHUNK - 1,
            DIRECT_CHUNK,
            DIRECT_CHUNK + 1,
            3 * DIRECT_CHUNK + 12345,
        ] {
            for direct in [true, false] {
                let path = dir.path().join(format!("f{size}-{direct}"));
                let data = pattern(size);
                let (mut w, done) = create_as(&path, direct).unwrap();
                for piece in data.chunks(1_000_003) {
                    w.write_all(piece).unwrap();
                }
                w.flush().unwrap();
                drop(w);
                done.finish().unwrap();
                assert!(
                    std::fs::read(&path).unwrap() == data,
                    "size {size} {direct}"
                );
            }
        }
    }

    /// A failure of the disk thread is an error at the end, never a silent success.
    #[test]
    fn a_failed_disk_write_fails_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"").unwrap();
        // Both descriptors read-only: every write fails.
        let direct = File::open(&path).unwrap();
        let buffered = File::open(&path).unwrap();
        let (mut w, io) = DirectWriter::start(direct, buffered);
        let mut failed = false;
        for _ in 0..8 {
            if w.write_all(&[1u8; DIRECT_CHUNK]).is_err() {
                failed = true;
                break;
            }
        }
        drop(w);
        let done = Finisher {
            file: File::open(&path).unwrap(),
            io: Some(io),
        };
        assert!(done.finish().is_err());
        assert!(failed, "later writes report that the disk writer stopped");
    }
}
