//! A reader that runs on its own thread, a few buffers ahead of its consumer,
//! so that producing bytes (copying them out of the page cache, decompressing
//! a package) overlaps consuming them (hashing) on another core.
//!
//! Invariants:
//! - Bounded memory: at most `depth` buffers of `chunk` bytes exist, recycled
//!   between the two threads; nothing else is buffered.
//! - Bytes come out in the order the inner reader produced them, none skipped
//!   or repeated; an error of the inner reader is returned to the consumer
//!   after every byte read before it, and again on every later read (it is
//!   never turned into a clean end).
//! - No thread outlives its use: dropping a [`ReadAhead`] disconnects both
//!   channels and its thread returns at its next send or receive;
//!   [`ReadAhead::into_inner`] joins it and hands the inner reader back.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

enum Msg {
    /// A buffer and how many of its bytes are valid (always > 0).
    Data(Vec<u8>, usize),
    /// The inner reader reached its end.
    End,
    /// The inner reader failed.
    Failed(io::Error),
}

/// `Read` + `BufRead` over a reader driven by a thread of its own.
pub struct ReadAhead<R> {
    full: Receiver<Msg>,
    empty: SyncSender<Vec<u8>>,
    /// The buffer being consumed, its valid length and the read position.
    current: Option<(Vec<u8>, usize, usize)>,
    /// Set once the end or an error was received: (error kind, message) to repeat.
    finished: Option<Option<(io::ErrorKind, String)>>,
    thread: JoinHandle<R>,
}

impl<R: Read + Send + 'static> ReadAhead<R> {
    /// Starts reading `inner` on a new thread into `depth` (at least 2)
    /// buffers of `chunk` bytes.
    pub fn new(inner: R, chunk: usize, depth: usize) -> io::Result<ReadAhead<R>> {
        let depth = depth.max(2);
        let chunk = chunk.max(1);
        let (full_tx, full) = sync_channel::<Msg>(depth);
        let (empty, empty_rx) = sync_channel::<Vec<u8>>(depth);
        for _ in 0..depth {
            empty
                .send(vec![0u8; chunk])
                .expect("the receiver is alive and the channel has room");
        }
        let thread = std::thread::Builder::new()
            .name("ferry-read-ahead".into())
            .spawn(move || produce(inner, &full_tx, &empty_rx))?;
        Ok(ReadAhead {
            full,
            empty,
            current: None,
            finished: None,
            thread,
        })
    }

    /// Stops the thread and returns the inner reader, positioned wherever the
    /// thread had read to (all of it when the consumer read to the end).
    pub fn into_inner(self) -> io::Result<R> {
        let ReadAhead {
            full,
            empty,
            thread,
            ..
        } = self;
        drop(full);
        drop(empty);
        thread
            .join()
            .map_err(|_| io::Error::other("the read-ahead thread panicked"))
    }
}

/// Reads until `buf` is full or `reader` ends: the bytes read (fewer than
/// `buf.len()` only at the end). An error stops it (bytes before it are lost).
pub fn read_up_to(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The thread's loop: fill a free buffer completely (or to the end), pass it on.
fn produce<R: Read>(mut inner: R, full: &SyncSender<Msg>, empty: &Receiver<Vec<u8>>) -> R {
    loop {
        let Ok(mut buf) = empty.recv() else {
            return inner; // consumer gone
        };
        let mut n = 0;
        let mut failed = None;
        let mut at_end = false;
        while n < buf.len() {
            match inner.read(&mut buf[n..]) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if n > 0 && full.send(Msg::Data(buf, n)).is_err() {
            return inner;
        }
        if let Some(e) = failed {
            let _ = full.send(Msg::Failed(e));
            return inner;
        }
        if at_end {
            let _ = full.send(Msg::End);
            return inner;
        }
    }
}

impl<R> ReadAhead<R> {
    fn ended(&self) -> io::Result<&[u8]> {
        match &self.finished {
            Some(Some((kind, message))) => Err(io::Error::new(*kind, message.clone())),
            _ => Ok(&[]),
        }
    }
}

impl<R> BufRead for ReadAhead<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.finished.is_some() {
            return self.ended();
        }
        if let Some((buf, len, pos)) = self.current.take() {
            if pos < len {
                self.current = Some((buf, len, pos));
            } else {
                // Back to the producer; it is gone only if it already finished.
                let _ = self.empty.send(buf);
            }
        }
        if self.current.is_none() {
            match self.full.recv() {
                Ok(Msg::Data(buf, len)) => self.current = Some((buf, len, 0)),
                Ok(Msg::End) => {
                    self.finished = Some(None);
                    return Ok(&[]);
                }
                Ok(Msg::Failed(e)) => {
                    self.finished = Some(Some((e.kind(), e.to_string())));
                    return Err(e);
                }
                Err(_) => {
                    self.finished = Some(Some((
                        io::ErrorKind::Other,
                        "the read-ahead thread stopped before the end".into(),
                    )));
                    return self.ended();
                }
            }
        }
        let (buf, len, pos) = self.current.as_ref().expect("set above");
        Ok(&buf[*pos..*len])
    }

    fn consume(&mut self, amt: usize) {
        if let Some((_, len, pos)) = self.current.as_mut() {
            *pos = (*pos + amt).min(*len);
        }
    }
}

impl<R> Read for ReadAhead<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `data` in odd-sized pieces, then fails with `fail` if given.
    struct Pieces {
        data: Vec<u8>,
        pos: usize,
        fail: Option<io::ErrorKind>,
    }

    impl Read for Pieces {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return match self.fail {
                    Some(kind) => Err(io::Error::new(kind, "inner failure")),
                    None => Ok(0),
                };
            }
            let n = buf.len().min(7919).min(self.data.len() - self.pos);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn yields_every_byte_in_order_and_returns_the_inner_reader() {
        for len in [0, 1, 4096, 4097, 100_000] {
            let inner = Pieces {
                data: data(len),
                pos: 0,
                fail: None,
            };
            let mut r = ReadAhead::new(inner, 4096, 3).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data(len), "len {len}");
            assert_eq!(r.read(&mut [0u8; 10]).unwrap(), 0);
            assert_eq!(r.into_inner().unwrap().pos, len);
        }
    }

    #[test]
    fn an_inner_error_follows_the_bytes_before_it_and_repeats() {
        let inner = Pieces {
            data: data(10_000),
            pos: 0,
            fail: Some(io::ErrorKind::InvalidData),
        };
        let mut r = ReadAhead::new(inner, 4096, 2).unwrap();
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(out, data(10_000));
        assert_eq!(
            r.read(&mut [0u8; 1]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn stopping_early_ends_the_thread() {
        let inner = Pieces {
            data: data(1 << 20),
            pos: 0,
            fail: None,
        };
        let mut r = ReadAhead::new(inner, 1024, 2).unwrap();
        let mut first = [0u8; 100];
        r.read_exact(&mut first).unwrap();
        assert_eq!(&first[..], &data(100)[..]);
        // The thread is blocked on a full channel; into_inner must not hang.
        let inner = r.into_inner().unwrap();
        assert!(inner.pos < 1 << 20);
    }
}
