//! Reading the source once for every sink: manifests held until the plans
//! are made, then each blob handed to every sink that needs it.

use super::lane::{read_verified, verified};
use super::tee::tee;
use super::*;

/// Reads the source once for every lane.
pub(super) struct Reader<'e, 'a> {
    pub(super) lanes: Vec<Lane<'e, 'a>>,
    pub(super) memory: Arc<ChunkPool>,
    pub(super) metadata: HashMap<String, Vec<u8>>,
    /// Manifests read before the plans were known.
    pub(super) buffered: HashMap<Digest, Vec<u8>>,
    pub(super) buffered_bytes: u64,
}

impl Reader<'_, '_> {
    pub(super) fn visit(&mut self, entry: Entry<'_>) -> Result<Flow, EntryError> {
        match entry {
            Entry::Metadata { path, bytes } => {
                self.metadata.insert(path.to_owned(), bytes);
                Ok(Flow::Continue)
            }
            Entry::Foreign { why } => {
                for lane in self.lanes.iter_mut().filter(|l| !l.idle()) {
                    lane.not_streamable = Some(why.clone());
                }
                Ok(Flow::Stop)
            }
            Entry::Blob {
                path,
                digest,
                size,
                reader,
            } => self.blob(path, digest, size, reader),
        }
    }

    pub(super) fn blob(
        &mut self,
        path: &str,
        digest: Digest,
        size: u64,
        reader: &mut dyn Read,
    ) -> Result<Flow, EntryError> {
        let planning = self.lanes.iter().any(|l| l.plan.is_none() && !l.idle());
        // Before the plans are known, manifests (JSON, ≤ 4 MiB) are held in
        // memory; the first byte tells them from layers, which are never held.
        let mut first = [0u8; 1];
        let mut peeked = 0;
        let mut rest;
        let reader: &mut dyn Read = if planning && size > 0 {
            peeked = reader
                .read(&mut first)
                .map_err(|e| EntryError::Read(format!("reading entry {path:?}: {e}")))?;
            rest = (&first[..peeked]).chain(reader);
            &mut rest
        } else {
            reader
        };
        let json = peeked == 1 && first[0] == b'{';
        if planning
            && json
            && size <= MAX_MANIFEST_BYTES
            && self.buffered_bytes + size <= MAX_BUFFERED
        {
            let bytes = read_verified(path, &digest, size, reader)?;
            self.buffered_bytes += size;
            self.buffered.insert(digest, bytes);
            return Ok(Flow::Continue);
        }
        let (metadata, buffered) = (&self.metadata, &self.buffered);
        for lane in self.lanes.iter_mut() {
            lane.first_layer(metadata, buffered);
        }
        let mut takers: Vec<(usize, BlobTask)> = Vec::new();
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            if let Some(task) = lane.wants(&digest, size, buffered) {
                takers.push((i, task));
            }
        }
        if self.lanes.iter().all(Lane::idle) {
            return Ok(Flow::Stop);
        }
        if takers.is_empty() {
            return Ok(Flow::Continue);
        }
        // Small: read once into the shared read-ahead memory, verified, queued for each sink.
        let probing = takers.iter().any(|(i, _)| self.lanes[*i].probing_holding());
        if size <= SPOOL_MAX_BLOB && !probing {
            if let Some(memory) = self.memory.try_lend(size) {
                let blob = memory.fill(reader, size, &digest).map_err(|e| match e {
                    FillError::Read(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        EntryError::Read(format!("entry {path:?} is truncated"))
                    }
                    FillError::Read(e) => EntryError::Read(format!("reading entry {path:?}: {e}")),
                    FillError::Digest { actual } => EntryError::Mismatch {
                        entry: path.to_owned(),
                        expected: digest.clone(),
                        actual,
                    },
                })?;
                let blob: Arc<dyn HeldBytes> = Arc::new(blob);
                for (i, task) in takers {
                    let lane = &mut self.lanes[i];
                    lane.spool.submit(task, blob.clone());
                    lane.delivered(digest.clone());
                }
                return Ok(self.flow());
            }
        }
        // Large, or the read-ahead is full: straight from the source.
        let mut verifying = VerifyingReader::new(reader, &digest, Some(size));
        let results = if takers.len() == 1 {
            let (i, task) = &takers[0];
            vec![self.lanes[*i]
                .executor
                .deliver(task, Body::Once(&mut verifying))]
        } else {
            let executors: Vec<&Executor<'_>> = takers
                .iter()
                .map(|(i, _)| self.lanes[*i].executor)
                .collect();
            tee(&mut verifying, &takers, &executors)
        };
        verified(path, verifying)?;
        for ((i, _), result) in takers.into_iter().zip(results) {
            let lane = &mut self.lanes[i];
            match result {
                Ok(()) => lane.delivered(digest.clone()),
                Err(e) => lane.failed_delivery(digest.clone(), e),
            }
        }
        Ok(self.flow())
    }

    /// Stop when no lane needs anything more from this read.
    pub(super) fn flow(&self) -> Flow {
        if self.lanes.iter().all(|l| l.idle() || l.spool.failed()) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}
