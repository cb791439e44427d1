//! The advisory store lock: one writer per store, and the lock file says who.
//!
//! It is a `flock` on `.ferry/lock`: the kernel drops it when its holder exits
//! however it exits, so a lock file left by a dead process (a stale PID inside)
//! never blocks anyone; only a live holder counts.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::StoreError;

/// Holds the exclusive lock on a store until dropped (or the process dies).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Fails with [`StoreError::Locked`] naming the holder if a live process
    /// holds the lock at `path` (a writer is changing the store); a missing
    /// lock file, or one left by a dead process, is free. Takes nothing, and
    /// needs only read access (stores on read-only media can be checked).
    pub fn check_free(path: &Path, store_root: &Path) -> Result<(), StoreError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("open lock file", path, e)),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(()), // released when `file` closes
            Err(std::fs::TryLockError::WouldBlock) => Err(locked(&mut file, store_root)),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io("lock", path, e)),
        }
    }

    /// Takes the lock at `path` without waiting; fails with [`StoreError::Locked`] naming the holder.
    pub fn acquire(path: &Path, store_root: &Path) -> Result<StoreLock, StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StoreError::io("open lock file", path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(locked(&mut file, store_root)),
            Err(std::fs::TryLockError::Error(e)) => return Err(StoreError::io("lock", path, e)),
        }
        let who = format!(
            "pid {} ({})",
            std::process::id(),
            std::env::args().next().unwrap_or_else(|| "ferry".into())
        );
        file.set_len(0)
            .map_err(|e| StoreError::io("truncate lock file", path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| StoreError::io("seek lock file", path, e))?;
        file.write_all(who.as_bytes())
            .map_err(|e| StoreError::io("write lock file", path, e))?;
        Ok(StoreLock { _file: file })
    }
}

/// The error for a lock held by someone else, naming the holder as its lock file does.
fn locked(file: &mut File, store_root: &Path) -> StoreError {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    let holder = holder.trim();
    StoreError::Locked {
        path: store_root.to_path_buf(),
        holder: if holder.is_empty() {
            "unknown holder".into()
        } else {
            holder.to_owned()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join("lock");
        let first = StoreLock::acquire(&lock_path, dir.path()).unwrap();
        let err = StoreLock::acquire(&lock_path, dir.path()).unwrap_err();
        match err {
            StoreError::Locked { holder, .. } => {
                assert!(holder.contains(&std::process::id().to_string()), "{holder}")
            }
            other => panic!("unexpected {other}"),
        }
        drop(first);
        StoreLock::acquire(&lock_path, dir.path()).unwrap();
    }

    #[test]
    fn check_free_names_a_live_holder_and_ignores_a_dead_one() {
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join("lock");
        StoreLock::check_free(&lock_path, dir.path()).unwrap(); // no lock file yet
        let held = StoreLock::acquire(&lock_path, dir.path()).unwrap();
        match StoreLock::check_free(&lock_path, dir.path()).unwrap_err() {
            StoreError::Locked { holder, .. } => {
                assert!(holder.contains(&std::process::id().to_string()), "{holder}")
            }
            other => panic!("unexpected {other}"),
        }
        // Checking takes nothing: the holder still holds it.
        assert!(StoreLock::acquire(&lock_path, dir.path()).is_err());
        drop(held);
        // What a killed writer leaves: the file still names it, nobody holds it.
        std::fs::write(&lock_path, "pid 999999999 (ferry-export)").unwrap();
        StoreLock::check_free(&lock_path, dir.path()).unwrap();
    }
}
