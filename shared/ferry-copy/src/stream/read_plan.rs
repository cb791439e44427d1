//! Reading a single-pass source only as far as its plan, writing nothing.

use super::lane::{make_plan, read_verified};
use super::*;

/// Reads a single-pass source only as far as its plan needs, writing
/// nothing: metadata and manifests are held in memory (bounded as in a
/// copy), layers are passed over unread, and reading stops at the first layer
/// after which the plan is complete. `Ok(Err(reason))`: the source cannot be
/// planned in one read (not an OCI layout: stage it).
pub fn read_plan(
    source: &dyn SinglePassSource,
    map: MapFn<'_>,
    progress: Arc<AtomicU64>,
) -> Result<Result<Plan, String>, CopyError> {
    struct Planner<'m> {
        map: MapFn<'m>,
        metadata: HashMap<String, Vec<u8>>,
        buffered: HashMap<Digest, Vec<u8>>,
        buffered_bytes: u64,
        plan: Option<Result<Plan, CopyError>>,
        foreign: Option<String>,
    }
    impl Planner<'_> {
        /// The plan, if the metadata and manifests read so far make one.
        fn try_plan(&self) -> Option<Result<Plan, CopyError>> {
            match make_plan(&self.metadata, &self.buffered, self.map) {
                Ok(p) => Some(Ok(p)),
                Err(Ok(_)) => None, // index.json or manifests still to come
                Err(Err(e)) => Some(Err(e)),
            }
        }
        fn visit(&mut self, entry: Entry<'_>) -> Result<Flow, EntryError> {
            match entry {
                Entry::Metadata { path, bytes } => {
                    self.metadata.insert(path.to_owned(), bytes);
                }
                Entry::Foreign { why } => {
                    self.foreign = Some(why);
                    return Ok(Flow::Stop);
                }
                Entry::Blob {
                    path,
                    digest,
                    size,
                    reader,
                } => {
                    if size <= MAX_MANIFEST_BYTES && self.buffered_bytes + size <= MAX_BUFFERED {
                        let bytes = read_verified(path, &digest, size, reader)?;
                        if bytes.first() == Some(&b'{') {
                            self.buffered_bytes += size;
                            self.buffered.insert(digest, bytes);
                            return Ok(Flow::Continue);
                        }
                    }
                    // A layer: if the plan is complete now, nothing further is needed.
                    if let Some(p) = self.try_plan() {
                        self.plan = Some(p);
                        return Ok(Flow::Stop);
                    }
                }
            }
            Ok(Flow::Continue)
        }
    }
    let mut planner = Planner {
        map,
        metadata: HashMap::new(),
        buffered: HashMap::new(),
        buffered_bytes: 0,
        plan: None,
        foreign: None,
    };
    source
        .read_once(progress, &mut |e| planner.visit(e))
        .map_err(CopyError::Source)?;
    if let Some(why) = planner.foreign.take() {
        return Ok(Err(why));
    }
    if let Some(p) = planner.plan.take() {
        return p.map(Ok);
    }
    if !planner.metadata.contains_key("index.json") {
        return Ok(Err("the package has no index.json".to_owned()));
    }
    let index: IndexJson = serde_json::from_slice(&planner.metadata["index.json"])
        .map_err(|e| CopyError::Source(format!("index.json: {e}").into()))?;
    let planned = plan(
        &index.manifests,
        map,
        memory_loader(&planner.buffered, "the package"),
    )?;
    Ok(Ok(planned))
}
