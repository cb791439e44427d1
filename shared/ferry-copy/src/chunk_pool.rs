//! Memory for blobs held by the spool: fixed-size chunks lent from a pool
//! with a hard cap, reused from blob to blob.
//!
//! Why chunks and not one `Vec` per blob: glibc raises its mmap threshold after
//! the first large `free`, so later multi-MiB vectors come from the heap and
//! freed ones stay resident (measured: 17 MiB over a 24 MiB budget); asking for
//! fresh mappings instead costs a page fault and a page clear per 4 KiB of every
//! blob (measured: +50% system time). Chunks that go back to the pool are
//! neither: they stay mapped, are written over by the next blob, and the total
//! never exceeds the cap.
//!
//! Invariants: at most `max_chunks` chunks exist (lent or free); a
//! [`HeldBlob`] returns its chunks to the pool when its last reference drops.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};

use ferry_store::digest::Hasher;
use ferry_store::Digest;

/// A blob's verified bytes in memory, readable from any offset (for retries
/// and resumes).
pub trait HeldBytes: Send + Sync {
    /// Copies bytes from `position` into `buf`; returns how many (0 at the end).
    fn read_at(&self, position: usize, buf: &mut [u8]) -> usize;
}

impl HeldBytes for Vec<u8> {
    fn read_at(&self, position: usize, buf: &mut [u8]) -> usize {
        let rest = self.get(position..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        n
    }
}

/// Reads shared in-memory bytes from an offset.
struct SharedBytes {
    bytes: Arc<dyn HeldBytes>,
    position: usize,
}

impl Read for SharedBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.bytes.read_at(self.position, buf);
        self.position += n;
        Ok(n)
    }
}

/// A reader of `bytes` from `offset` (what a re-openable body opens).
pub fn read_from(bytes: &Arc<dyn HeldBytes>, offset: u64) -> Box<dyn Read + Send> {
    Box::new(SharedBytes {
        bytes: bytes.clone(),
        position: usize::try_from(offset).unwrap_or(usize::MAX),
    })
}

/// Size of one chunk: small enough that a blob's last chunk wastes little,
/// large enough that a 16 MiB layer is 16 chunks.
pub(crate) const CHUNK_BYTES: usize = 1 << 20;

/// Chunks of [`CHUNK_BYTES`], at most `max_chunks` of them in existence.
pub(crate) struct ChunkPool {
    state: Mutex<PoolState>,
    max_chunks: usize,
}

struct PoolState {
    free: Vec<Box<[u8]>>,
    lent: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Chunks needed to hold `size` bytes (one at least, so that every held blob
/// counts against the cap).
pub(crate) fn chunks_for(size: u64) -> usize {
    (size.div_ceil(CHUNK_BYTES as u64) as usize).max(1)
}

impl ChunkPool {
    /// A pool that lends at most `budget_bytes` (rounded down to whole chunks).
    pub fn new(budget_bytes: u64) -> Arc<ChunkPool> {
        Arc::new(ChunkPool {
            state: Mutex::new(PoolState {
                free: Vec::new(),
                lent: 0,
            }),
            max_chunks: (budget_bytes / CHUNK_BYTES as u64) as usize,
        })
    }

    /// Lends the chunks for a blob of `size` bytes if they are available now
    /// (never waits); they come back when the returned blob is dropped.
    pub fn try_lend(self: &Arc<Self>, size: u64) -> Option<EmptyBlob> {
        let wanted = chunks_for(size);
        let mut state = lock(&self.state);
        if state.lent + wanted > self.max_chunks {
            return None;
        }
        state.lent += wanted;
        let reused = state.free.len().min(wanted);
        let at = state.free.len() - reused;
        let mut chunks: Vec<Box<[u8]>> = state.free.split_off(at);
        drop(state);
        // Fresh chunks are allocated outside the lock; untouched pages of a
        // fresh chunk cost no memory (calloc maps them lazily).
        chunks.resize_with(wanted, || vec![0u8; CHUNK_BYTES].into_boxed_slice());
        Some(EmptyBlob(HeldBlob {
            chunks,
            len: 0,
            pool: self.clone(),
        }))
    }

    fn give_back(&self, chunks: Vec<Box<[u8]>>) {
        let mut state = lock(&self.state);
        state.lent -= chunks.len();
        state.free.extend(chunks);
    }

    /// Chunks lent out now.
    #[cfg(test)]
    pub fn lent(&self) -> usize {
        lock(&self.state).lent
    }
}

/// Chunks lent for one blob, not yet filled (dropping it gives them back).
pub(crate) struct EmptyBlob(HeldBlob);

/// Why filling a blob from the package failed.
#[derive(Debug)]
pub(crate) enum FillError {
    /// The package ended or could not be read.
    Read(io::Error),
    /// The bytes read do not have the expected digest.
    Digest { actual: Digest },
}

impl EmptyBlob {
    /// Reads exactly `size` bytes from `reader`, hashing each chunk while it is
    /// still in cache, and keeps them only if they match `digest`. On any
    /// failure the chunks go back to the pool.
    pub fn fill(
        self,
        reader: &mut dyn Read,
        size: u64,
        digest: &Digest,
    ) -> Result<HeldBlob, FillError> {
        let mut blob = self.0;
        let mut hasher = Hasher::new(digest.algorithm());
        let mut left = size as usize;
        for chunk in blob.chunks.iter_mut() {
            let n = left.min(CHUNK_BYTES);
            reader
                .read_exact(&mut chunk[..n])
                .map_err(FillError::Read)?;
            hasher.update(&chunk[..n]);
            left -= n;
            blob.len += n;
        }
        if left != 0 {
            return Err(FillError::Read(io::Error::other(
                "blob larger than the chunks lent for it",
            )));
        }
        let actual = hasher.finish();
        if actual != *digest {
            return Err(FillError::Digest { actual });
        }
        Ok(blob)
    }
}

/// The verified bytes of one blob, in pool chunks.
pub(crate) struct HeldBlob {
    chunks: Vec<Box<[u8]>>,
    len: usize,
    pool: Arc<ChunkPool>,
}

impl HeldBlob {
    /// Number of bytes held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }
}

impl HeldBytes for HeldBlob {
    fn read_at(&self, position: usize, buf: &mut [u8]) -> usize {
        if position >= self.len {
            return 0;
        }
        let (index, offset) = (position / CHUNK_BYTES, position % CHUNK_BYTES);
        let in_chunk = (CHUNK_BYTES - offset).min(self.len - position);
        let n = in_chunk.min(buf.len());
        buf[..n].copy_from_slice(&self.chunks[index][offset..offset + n]);
        n
    }
}

impl Drop for HeldBlob {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.chunks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_store::digest::Algorithm;

    fn sha256(bytes: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(bytes);
        h.finish()
    }

    #[test]
    fn shared_bytes_read_from_any_offset() {
        let bytes: Arc<dyn HeldBytes> = Arc::new(b"0123456789".to_vec());
        let mut out = String::new();
        read_from(&bytes, 4).read_to_string(&mut out).unwrap();
        assert_eq!(out, "456789");
        assert_eq!(read_from(&bytes, 99).read(&mut [0u8; 4]).unwrap(), 0);
    }

    fn read_all(blob: &HeldBlob, from: usize, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        let mut position = from;
        loop {
            let n = blob.read_at(position, &mut buf);
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
            position += n;
        }
    }

    #[test]
    fn a_blob_spanning_chunks_reads_back_from_any_offset() {
        let pool = ChunkPool::new(4 * CHUNK_BYTES as u64);
        let bytes: Vec<u8> = (0..CHUNK_BYTES * 2 + 12345)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let blob = pool
            .try_lend(bytes.len() as u64)
            .unwrap()
            .fill(&mut bytes.as_slice(), bytes.len() as u64, &sha256(&bytes))
            .unwrap();
        assert_eq!(blob.len(), bytes.len());
        assert_eq!(pool.lent(), 3);
        assert_eq!(read_all(&blob, 0, 64 << 10), bytes);
        let mid = CHUNK_BYTES - 5;
        assert_eq!(read_all(&blob, mid, 7000), &bytes[mid..]);
        assert_eq!(read_all(&blob, bytes.len() + 9, 16), b"");
        drop(blob);
        assert_eq!(pool.lent(), 0);
    }

    #[test]
    fn the_cap_is_never_exceeded_and_chunks_come_back() {
        let pool = ChunkPool::new(3 * CHUNK_BYTES as u64);
        let first = pool.try_lend(2 * CHUNK_BYTES as u64).unwrap();
        assert!(
            pool.try_lend(CHUNK_BYTES as u64 + 1).is_none(),
            "would need 4 chunks"
        );
        let small = pool.try_lend(10).unwrap();
        assert!(pool.try_lend(1).is_none(), "every blob holds a chunk");
        drop(first);
        drop(small);
        assert_eq!(pool.lent(), 0);
        assert!(pool.try_lend(3 * CHUNK_BYTES as u64).is_some());
    }

    #[test]
    fn a_wrong_digest_or_short_input_is_refused_and_gives_the_chunks_back() {
        let pool = ChunkPool::new(2 * CHUNK_BYTES as u64);
        let bytes = vec![5u8; 1000];
        let wrong = sha256(b"something else");
        match pool
            .try_lend(1000)
            .unwrap()
            .fill(&mut bytes.as_slice(), 1000, &wrong)
        {
            Err(FillError::Digest { actual }) => assert_eq!(actual, sha256(&bytes)),
            other => panic!(
                "expected a digest mismatch, got {:?}",
                other.map(|b| b.len())
            ),
        }
        assert_eq!(pool.lent(), 0);
        let short = pool
            .try_lend(2000)
            .unwrap()
            .fill(&mut bytes.as_slice(), 2000, &sha256(&bytes));
        assert!(matches!(short, Err(FillError::Read(_))));
        assert_eq!(pool.lent(), 0);
    }
}
