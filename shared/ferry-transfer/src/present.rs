//! Making one leaf blob present in every repository that needs it, during a
//! streaming push: mounted where another repository of the registry has it,
//! uploaded once otherwise. Shared by the archive walk (blobs streamed straight
//! from the package) and the spool workers (blobs held in memory).

use std::io::Read;
use std::sync::Arc;

use ferry_registry::meter::TransferMeter;
use ferry_registry::push::PushEvent;
use ferry_registry::upload::{NoSessionLog, UploadOptions, UploadOutcome};
use ferry_registry::Client;
use ferry_store::Descriptor;

use crate::stream_push::StreamError;

/// What to do for one blob, decided from the plan and the presence checks.
#[derive(Debug, Clone)]
pub(crate) struct BlobTask {
    pub desc: Descriptor,
    /// Repositories that need the blob, each with whether the registry has it there.
    pub repos: Vec<(String, bool)>,
    /// A repository of an up-to-date image that holds the blob (mount source).
    pub mount_source: Option<String>,
}

/// A blob's verified bytes in memory, readable from any offset (for retries
/// and resumes).
pub(crate) trait HeldBytes: Send + Sync {
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

/// Where the blob's bytes come from.
pub(crate) enum BlobBody<'r> {
    /// Held in memory and already verified against the digest: retryable.
    Memory(Arc<dyn HeldBytes>),
    /// Streamed from the package once: the registry verifies the digest.
    Stream(&'r mut dyn Read),
}

/// Blobs uploaded and mounted, and bytes sent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    pub uploaded: u64,
    pub mounted: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.uploaded += other.uploaded;
        self.mounted += other.mounted;
        self.bytes += other.bytes;
    }
}

/// Reads a shared in-memory blob from an offset (for retries and resumes).
struct SharedBytes {
    bytes: Arc<dyn HeldBytes>,
    position: usize,
}

impl Read for SharedBytes {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.bytes.read_at(self.position, buf);
        self.position += n;
        Ok(n)
    }
}

/// Makes `task.desc` present in every repository of `task` that lacks it.
pub(crate) fn make_present(
    client: &Client,
    meter: &TransferMeter,
    events: &(dyn Fn(PushEvent) + Sync),
    task: &BlobTask,
    body: BlobBody<'_>,
) -> Result<Tally, StreamError> {
    let desc = &task.desc;
    let wrap = |repo: &str| {
        let context = format!("blob {} ({} bytes) in {repo}", desc.digest, desc.size);
        move |source| StreamError::Registry { context, source }
    };
    let mut have_in = task
        .repos
        .iter()
        .find(|(_, present)| *present)
        .map(|(r, _)| r.clone())
        .or_else(|| task.mount_source.clone());
    let mut tally = Tally::default();
    let mut body = Some(body);
    for (repo, present) in &task.repos {
        if *present {
            continue; // counted and reported when presence was asked
        }
        // In-memory bytes can be sent again (a retry, or a refused mount); a stream cannot.
        let memory = match &body {
            Some(BlobBody::Memory(bytes)) => Some(bytes.clone()),
            _ => None,
        };
        if have_in.is_some() || memory.is_some() {
            let open = move |offset: u64| -> std::io::Result<Box<dyn Read + Send>> {
                match &memory {
                    Some(bytes) => Ok(Box::new(SharedBytes {
                        bytes: bytes.clone(),
                        position: offset as usize,
                    })),
                    None => Err(std::io::Error::other(
                        "the blob streamed past already; rerun to upload it",
                    )),
                }
            };
            let outcome = client
                .upload_blob(
                    repo,
                    desc,
                    &open,
                    have_in.as_deref(),
                    &NoSessionLog,
                    &UploadOptions::default(),
                    meter,
                )
                .map_err(wrap(repo))?;
            if outcome == UploadOutcome::Mounted {
                tally.mounted += 1;
                events(PushEvent::BlobMounted {
                    repository: repo.clone(),
                    digest: desc.digest.clone(),
                    from: have_in.clone().unwrap_or_default(),
                    size: desc.size,
                });
                continue;
            }
        } else {
            match body.take() {
                Some(BlobBody::Stream(reader)) => client.upload_stream(repo, desc, reader, meter),
                _ => unreachable!("a stream is uploaded once, then mounted"),
            }
            .map_err(wrap(repo))?;
        }
        tally.uploaded += 1;
        tally.bytes += desc.size;
        events(PushEvent::BlobUploaded {
            repository: repo.clone(),
            digest: desc.digest.clone(),
            size: desc.size,
            resumed_from: 0,
        });
        have_in.get_or_insert_with(|| repo.clone());
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_bytes_reads_from_any_offset() {
        let bytes: Arc<dyn HeldBytes> = Arc::new(b"0123456789".to_vec());
        let mut out = String::new();
        SharedBytes {
            bytes: bytes.clone(),
            position: 4,
        }
        .read_to_string(&mut out)
        .unwrap();
        assert_eq!(out, "456789");
        let mut past_end = SharedBytes {
            bytes,
            position: 99,
        };
        assert_eq!(past_end.read(&mut [0u8; 4]).unwrap(), 0);
    }
}
