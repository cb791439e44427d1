//! One stream to several sinks at once, chunk by chunk.

use super::*;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Reads a channel of chunks as a stream.
struct ChunkReader {
    chunks: Receiver<Arc<Vec<u8>>>,
    current: Arc<Vec<u8>>,
    position: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.position == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Err(_) => return Ok(0), // the sender is done
            }
        }
        let n = buf.len().min(self.current.len() - self.position);
        buf[..n].copy_from_slice(&self.current[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// Delivers one stream to several sinks at once: each gets its own reader
/// fed from `source` chunk by chunk (at most [`TEE_DEPTH`] chunks ahead of the
/// slowest); a sink that fails stops taking chunks and the others go on.
pub(super) fn tee(
    source: &mut dyn Read,
    takers: &[(usize, BlobTask)],
    executors: &[&Executor<'_>],
) -> Vec<Result<(), CopyError>> {
    std::thread::scope(|scope| {
        let mut senders: Vec<Option<SyncSender<Arc<Vec<u8>>>>> = Vec::new();
        let mut handles = Vec::new();
        for ((_, task), executor) in takers.iter().zip(executors) {
            let (tx, rx) = sync_channel(TEE_DEPTH);
            senders.push(Some(tx));
            handles.push(scope.spawn(move || {
                let mut reader = ChunkReader {
                    chunks: rx,
                    current: Arc::new(Vec::new()),
                    position: 0,
                };
                let result = executor.deliver(task, Body::Once(&mut reader));
                // Leave nothing unread for the feeder to wait on.
                drop(reader);
                result
            }));
        }
        let mut buf = vec![0u8; TEE_CHUNK];
        let mut read_error = None;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            let chunk = Arc::new(buf[..n].to_vec());
            for sender in senders.iter_mut() {
                if let Some(s) = sender {
                    if s.send(chunk.clone()).is_err() {
                        *sender = None; // that sink stopped reading
                    }
                }
            }
            if senders.iter().all(Option::is_none) {
                break;
            }
        }
        drop(senders);
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => match &read_error {
                    Some(e) => r.and(Err(CopyError::Source(
                        format!("reading the package: {e}").into(),
                    ))),
                    None => r,
                },
                Err(_) => Err(CopyError::Source("an upload thread failed".into())),
            })
            .collect()
    })
}
