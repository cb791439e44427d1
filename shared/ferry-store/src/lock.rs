//! The advisory store lock: one writer per store, and the lock file says who.

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
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StoreError::Locked {
                    path: store_root.to_path_buf(),
                    holder: if holder.is_empty() {
                        "unknown holder".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
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
}
