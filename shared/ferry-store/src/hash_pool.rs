//! Hashing off the caller's thread. [`HashPool`]: several byte streams at
//! once, each on one of a few worker threads,
//! for a reader that meets them one after another (the entries of a package
//! being decoded): the reader copies each stream into chunks and moves on to
//! the next stream while workers hash the earlier ones. sha256 cannot be split
//! within one stream, so this is how a package's entries use more than one core.
//! [`HashBehind`]: one stream hashed on a thread of its own behind its writer.
//!
//! Invariants: each stream is hashed whole, in order, on one worker; memory is
//! bounded by the chunk budget given at start (the reader waits for a chunk
//! to come back when the budget is spent); a stream cut short (`Err` from its
//! reader) yields no digest; `finish` returns the digest of every stream fed
//! to its end, by the id `feed` returned.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use crate::digest::{Algorithm, Digest, Hasher};
use crate::read_ahead::read_up_to;

/// Bytes per chunk handed to a worker.
pub const CHUNK: usize = 1 << 20;

enum Job {
    Begin(u64, Algorithm),
    Bytes(Vec<u8>),
    End,
    Abandon,
}

/// See the module doc.
pub struct HashPool {
    workers: Vec<Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
    free: Receiver<Vec<u8>>,
    give_back: Sender<Vec<u8>>,
    results: Receiver<(u64, Digest)>,
    allocated: usize,
    budget: usize,
    next_id: u64,
}

impl HashPool {
    /// `threads` workers sharing `budget_bytes` of chunks (at least one per worker).
    pub fn new(threads: usize, budget_bytes: usize) -> HashPool {
        let threads = threads.max(1);
        let (give_back, free) = channel::<Vec<u8>>();
        let (report, results) = channel::<(u64, Digest)>();
        let mut workers = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = channel::<Job>();
            let give_back = give_back.clone();
            let report = report.clone();
            handles.push(std::thread::spawn(move || {
                let mut current: Option<(u64, Hasher)> = None;
                for job in rx {
                    match job {
                        Job::Begin(id, algorithm) => current = Some((id, Hasher::new(algorithm))),
                        Job::Bytes(chunk) => {
                            if let Some((_, h)) = &mut current {
                                h.update(&chunk);
                            }
                            let _ = give_back.send(chunk);
                        }
                        Job::End => {
                            if let Some((id, h)) = current.take() {
                                let _ = report.send((id, h.finish()));
                            }
                        }
                        Job::Abandon => current = None,
                    }
                }
            }));
            workers.push(tx);
        }
        HashPool {
            workers,
            handles,
            free,
            give_back,
            results,
            allocated: 0,
            budget: (budget_bytes / CHUNK).max(threads),
            next_id: 0,
        }
    }

    fn chunk(&mut self) -> Vec<u8> {
        if let Ok(c) = self.free.try_recv() {
            return c;
        }
        if self.allocated < self.budget {
            self.allocated += 1;
            return Vec::with_capacity(CHUNK);
        }
        // Every chunk is out: wait for a worker to give one back (workers
        // never stop while the pool exists, so one always comes back).
        self.free.recv().expect("the pool keeps a sender")
    }

    /// Reads exactly `size` bytes of a stream from `reader` and has a worker
    /// hash them with `algorithm`; `on_bytes` sees every chunk on this thread
    /// first (to keep a small entry, say). Returns the stream's id; on a read
    /// error or a short stream the worker drops it and the error is returned.
    pub fn feed(
        &mut self,
        algorithm: Algorithm,
        reader: &mut dyn Read,
        size: u64,
        mut on_bytes: impl FnMut(&[u8]),
    ) -> io::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let worker = self.workers[(id as usize) % self.workers.len()].clone();
        let send = |job: Job| {
            worker
                .send(job)
                .map_err(|_| io::Error::other("a hashing thread stopped"))
        };
        send(Job::Begin(id, algorithm))?;
        let mut left = size;
        while left > 0 {
            let mut chunk = self.chunk();
            chunk.clear();
            let want = left.min(CHUNK as u64) as usize;
            chunk.resize(want, 0);
            let filled = match read_up_to(reader, &mut chunk) {
                Ok(n) => n,
                Err(e) => {
                    let _ = self.give_back.send(chunk);
                    send(Job::Abandon)?;
                    return Err(e);
                }
            };
            if filled < want {
                let _ = self.give_back.send(chunk);
                send(Job::Abandon)?;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} of {size} bytes present", size - left + filled as u64),
                ));
            }
            on_bytes(&chunk);
            left -= want as u64;
            send(Job::Bytes(chunk))?;
        }
        send(Job::End)?;
        Ok(id)
    }

    /// Waits for every stream fed to its end; their digests by id.
    pub fn finish(self) -> HashMap<u64, Digest> {
        drop(self.workers);
        for h in self.handles {
            let _ = h.join();
        }
        self.results.try_iter().collect()
    }
}

/// Bytes gathered before they are handed to the hashing thread.
const HASH_CHUNK: usize = CHUNK;
/// Chunks in flight to the hashing thread (memory: this many x [`HASH_CHUNK`]).
const HASH_DEPTH: usize = 4;

/// One stream's sha256 computed on a thread of its own, a few chunks behind
/// the writer that gives it the bytes (a package's whole-file checksum).
pub struct HashBehind {
    pending: Vec<u8>,
    chunks: Option<SyncSender<Vec<u8>>>,
    spare: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<Digest>>,
}

impl HashBehind {
    /// Starts its thread.
    pub fn start() -> HashBehind {
        let (chunks, received) = sync_channel::<Vec<u8>>(HASH_DEPTH);
        let (give_back, spare) = sync_channel::<Vec<u8>>(HASH_DEPTH + 2);
        let thread = std::thread::spawn(move || {
            let mut h = Hasher::new(Algorithm::Sha256);
            for chunk in received {
                h.update(&chunk);
                let _ = give_back.try_send(chunk);
            }
            h.finish()
        });
        HashBehind {
            pending: Vec::with_capacity(HASH_CHUNK),
            chunks: Some(chunks),
            spare,
            thread: Some(thread),
        }
    }

    /// Hands `bytes` over (copied; the caller goes on at once unless
    /// [`HASH_DEPTH`] chunks are already waiting).
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let n = bytes.len().min(HASH_CHUNK - self.pending.len());
            self.pending.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.pending.len() == HASH_CHUNK {
                self.send();
            }
        }
    }

    fn send(&mut self) {
        let mut next = self.spare.try_recv().unwrap_or_default();
        next.clear();
        next.reserve(HASH_CHUNK);
        let full = std::mem::replace(&mut self.pending, next);
        if let Some(c) = &self.chunks {
            c.send(full)
                .expect("the hashing thread runs until its input ends");
        }
    }

    /// Waits for every byte given to be hashed.
    pub fn finish(mut self) -> Digest {
        if !self.pending.is_empty() {
            self.send();
        }
        self.chunks = None;
        self.thread
            .take()
            .expect("joined once")
            .join()
            .expect("the hashing thread does not panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_is_hashed_whole_and_a_short_one_has_no_digest() {
        let streams: Vec<Vec<u8>> = (0..7)
            .map(|i| (0..(i * 700_001 + 3)).map(|b| (b * 31 + i) as u8).collect())
            .collect();
        // A budget of two chunks for three workers: the reader waits for chunks.
        let mut pool = HashPool::new(3, 2 * CHUNK);
        let mut ids = Vec::new();
        let mut seen = 0usize;
        for s in &streams {
            let id = pool
                .feed(Algorithm::Sha256, &mut &s[..], s.len() as u64, |c| {
                    seen += c.len()
                })
                .unwrap();
            ids.push(id);
        }
        let short = [1u8; 10];
        let e = pool
            .feed(Algorithm::Sha256, &mut &short[..], 11, |_| {})
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let digests = pool.finish();
        assert_eq!(
            digests.len(),
            streams.len(),
            "no digest for the short stream"
        );
        for (id, s) in ids.iter().zip(&streams) {
            assert_eq!(digests[id], Digest::sha256_of(s));
        }
        assert_eq!(seen, streams.iter().map(Vec::len).sum::<usize>());
    }

    #[test]
    fn hash_behind_is_the_hash_of_every_byte_given_in_order() {
        let bytes: Vec<u8> = (0..5 * CHUNK + 123).map(|b| (b * 13) as u8).collect();
        let mut h = HashBehind::start();
        for piece in bytes.chunks(333_333) {
            h.update(piece);
        }
        assert_eq!(h.finish(), Digest::sha256_of(&bytes));
        assert_eq!(HashBehind::start().finish(), Digest::sha256_of(b""));
    }
}
