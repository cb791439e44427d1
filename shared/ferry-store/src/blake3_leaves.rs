//! blake3 of one big file on every thread of the current rayon pool, leaf by
//! leaf, with no barrier between leaves (`--fast`, one huge blob).
//!
//! blake3 is a tree: every aligned run of 2^k chunks is a subtree whose
//! chaining value can be computed alone and merged afterwards. The file is cut
//! into [`LEAF`]-byte leaves (a power of two; the last one may be short); each
//! worker takes the next leaf in file order from one counter, waits for one
//! reader thread ahead of all of them ([`crate::prefetch`]: cold, the disk sees
//! one sequential stream, as with `cat`; a file wholly in the page cache needs
//! no reader) to have read it, maps it, hashes it
//! to its chaining value and unmaps it; the values are then merged along the
//! tree (`blake3::hazmat`), giving exactly `blake3::hash` of the file.
//!
//! Why not `Hasher::update_rayon` over mapped windows: each window ended in a
//! join of all threads (the slowest thread's tail idles the others) and an
//! unmap; at 128 MiB windows that measured 0.93–0.97x `b3sum`, which maps the
//! whole file (4 GiB resident in its address space). Leaves taken from one
//! counter keep every core busy until the last leaf and hold one leaf per
//! thread mapped. Cold 4 GiB: the old windows read at 60–70% of `cat`, leaves
//! faulting their own pages in at about 80%, leaves behind the reader at
//! 92–95% (BENCHMARKS.md).
//!
//! Invariants: the result is `blake3::hash` of the file's first `len` bytes or
//! an error (never a partial hash); at most one [`LEAF`] mapped per thread;
//! leaves are merged only along the tree `blake3::hazmat::left_subtree_len`
//! defines (checked against `blake3::hash` in the tests, odd sizes included).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use blake3::hazmat::{
    left_subtree_len, merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

use crate::file_hash::{is_resident, Mapping, Pace};
use crate::prefetch::{Prefetch, StopOnDrop, PREFETCH_BUDGET};

/// Bytes of one leaf: a power of two (so every leaf is a whole subtree of the
/// tree), big enough that a mapping and a hand-off cost little per byte,
/// small enough that the last leaf's tail is short.
pub(crate) const LEAF: u64 = 16 << 20;

/// blake3 of the first `len` bytes of `file` (`len` more than one [`LEAF`];
/// the caller checked the file's size), hashed on every thread of the current pool.
pub(crate) fn blake3_by_leaves(file: &File, len: u64) -> io::Result<blake3::Hash> {
    debug_assert!(len > LEAF);
    let leaves = usize::try_from(len.div_ceil(LEAF))
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to hash"))?;
    let values: Vec<OnceLock<ChainingValue>> = (0..leaves).map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<io::Error>> = Mutex::new(None);
    let workers = rayon::current_num_threads().max(1);
    let prefetch = Prefetch::new(workers, PREFETCH_BUDGET);
    // A file wholly in the page cache needs no reader (one `cachestat` for all of it).
    let resident = is_resident(file, 0, len).unwrap_or(false);
    std::thread::scope(|threads| {
        if !resident {
            threads.spawn(|| prefetch.run_file(file, len));
        }
        // Whatever happens to the workers, the reader is released.
        let _stop = StopOnDrop(&prefetch);
        rayon::scope(|s| {
            for _ in 0..workers {
                s.spawn(|_| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= leaves {
                        break;
                    }
                    let offset = i as u64 * LEAF;
                    let n = (len - offset).min(LEAF);
                    // Waits for the reader (one sequential stream, as `cat`) to
                    // have read this leaf; dropped, it tells the reader it is hashed.
                    let mut ticket = (!resident).then(|| prefetch.ticket(offset, n));
                    if let Some(t) = ticket.as_mut() {
                        let _ = t.before(n);
                    }
                    let map = match Mapping::new(file, offset, n) {
                        Ok(map) => map,
                        Err(e) => {
                            failed
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                            // No one takes another leaf: the hash cannot be completed.
                            next.store(leaves, Ordering::Relaxed);
                            break;
                        }
                    };
                    let value = blake3::Hasher::new()
                        .set_input_offset(offset)
                        .update(map.bytes())
                        .finalize_non_root();
                    let _ = values[i].set(value);
                });
            }
        });
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let values: Vec<ChainingValue> = values
        .into_iter()
        .map(|v| {
            v.into_inner()
                .ok_or_else(|| io::Error::other("a leaf was not hashed"))
        })
        .collect::<io::Result<_>>()?;
    let left = left_subtree_len(len);
    let split = (left / LEAF) as usize;
    Ok(merge_subtrees_root(
        &merge(&values[..split], left),
        &merge(&values[split..], len - left),
        Mode::Hash,
    ))
}

/// The chaining value of the subtree of `len` bytes whose leaves' values are `values`.
/// Every split of a subtree longer than one leaf falls on a leaf boundary:
/// `left_subtree_len` is a power of two of at least [`LEAF`] there.
fn merge(values: &[ChainingValue], len: u64) -> ChainingValue {
    if values.len() == 1 {
        return values[0];
    }
    let left = left_subtree_len(len);
    let split = (left / LEAF) as usize;
    merge_subtrees_non_root(
        &merge(&values[..split], left),
        &merge(&values[split..], len - left),
        Mode::Hash,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    /// The tree merge gives blake3's own hash for sizes around every split:
    /// just over one leaf, whole leaves, a power of two of leaves and one byte
    /// either side, a short last chunk; on 1, 2 and 3 threads.
    #[test]
    fn leaves_merged_along_the_tree_are_blake3_of_the_whole_file() {
        let leaf = LEAF as usize;
        let biggest = 5 * leaf + 1025;
        let bytes: Vec<u8> = (0..biggest)
            .map(|i| (i >> 10) as u8 ^ (i as u8).rotate_left(3))
            .collect();
        for len in [
            leaf + 1,
            leaf + 1024,
            2 * leaf,
            2 * leaf + 1,
            3 * leaf - 1,
            4 * leaf,
            4 * leaf + 7,
            biggest,
        ] {
            let (_t, f) = file_with(&bytes[..len]);
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let got = pool.install(|| blake3_by_leaves(&f, len as u64)).unwrap();
                assert_eq!(
                    got,
                    blake3::hash(&bytes[..len]),
                    "{len} bytes on {threads} threads"
                );
            }
        }
    }

    /// A byte changed in any leaf (first, middle, last) changes the result.
    #[test]
    fn a_flipped_byte_in_any_leaf_changes_the_hash() {
        let len = 3 * LEAF as usize + 5000;
        let clean: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (_t, f) = file_with(&clean);
        let good = blake3_by_leaves(&f, len as u64).unwrap();
        assert_eq!(good, blake3::hash(&clean));
        for at in [0, LEAF as usize + 17, len - 1] {
            let mut bytes = clean.clone();
            bytes[at] ^= 0x40;
            let (_t, f) = file_with(&bytes);
            assert_ne!(
                blake3_by_leaves(&f, len as u64).unwrap(),
                good,
                "flip at {at}"
            );
        }
    }
}
