//! Where bytes come from, at random: a store on disk (and, for packing, a
//! registry). A single-pass source (a package read in its own order) is in
//! [`crate::stream`].
//!
//! Invariant: a store source refuses a plan whose leaf blobs it does not all
//! hold before anything is sent (an incomplete store is never half pushed).

use std::io::{Read, Seek, SeekFrom};

use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::{Descriptor, Store};

use crate::plan::{plan, Destination, Plan, PlanError};
use crate::report::CopyError;

/// A source that can open any blob at any offset.
pub trait Source: Sync {
    /// A manifest's exact bytes.
    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, CopyError>;
    /// A blob's bytes from `offset` (called again for each attempt).
    fn open_blob(&self, desc: &Descriptor, offset: u64) -> std::io::Result<Box<dyn Read + Send>>;
    /// True when a blob opened at offset 0 checks its own bytes: its last
    /// read fails with `InvalidData` unless they have the descriptor's size
    /// and digest (then the engine hands it to the sink as
    /// [`crate::sink::Body::ReopenChecked`], and a store does not hash it again).
    fn checks_blobs(&self) -> bool {
        false
    }
}

/// A store on disk as a source.
pub struct StoreSource<'s> {
    store: &'s Store,
}

impl<'s> StoreSource<'s> {
    /// Reads from `store`.
    pub fn new(store: &'s Store) -> StoreSource<'s> {
        StoreSource { store }
    }

    /// Plans the copy of every named image of the store (referrers attached),
    /// checking that the store holds every blob of them.
    pub fn plan(
        &self,
        map: impl Fn(&str) -> Result<Destination, String>,
    ) -> Result<Plan, CopyError> {
        let entries = self.store.index_entries()?;
        let plan = plan(&entries, map, |d| {
            self.store.read_small_blob(d, MAX_MANIFEST_BYTES)
        })
        .map_err(|e| match e {
            PlanError::Graph { name, problem } => {
                CopyError::Incomplete(format!("{name}: {problem}"))
            }
            other => CopyError::Plan(other),
        })?;
        for image in &plan.images {
            if let Some(b) = image
                .blobs
                .iter()
                .find(|b| !self.store.has_blob(&b.digest, b.size))
            {
                return Err(CopyError::Incomplete(format!(
                    "{}: blob {} is missing",
                    image.source, b.digest
                )));
            }
        }
        Ok(plan)
    }
}

impl Source for StoreSource<'_> {
    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, CopyError> {
        Ok(self.store.read_small_blob(desc, MAX_MANIFEST_BYTES)?)
    }

    fn open_blob(&self, desc: &Descriptor, offset: u64) -> std::io::Result<Box<dyn Read + Send>> {
        let mut f = std::fs::File::open(self.store.blob_path(&desc.digest))?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(std::io::BufReader::with_capacity(1 << 20, f)))
    }
}
