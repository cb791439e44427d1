//! The journal: an append-only JSON-lines record of completed work.
//!
//! It is a hint, never the truth: every entry is re-checked (stat, size) before
//! it is trusted, unparseable lines (a torn last line after a crash) are skipped,
//! and losing the whole file only costs time.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::StoreError;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A blob was verified and durably stored at its final path.
    BlobStored {
        /// The blob's digest.
        digest: Digest,
        /// Its size in bytes.
        size: u64,
        /// blake3 of its bytes, for cheap audits (`ferry-verify --fast`).
        blake3: String,
    },
    /// A chunked upload's last confirmed state (location and offset).
    UploadSession {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// Blob being uploaded.
        digest: Digest,
        /// The newest upload URL the registry gave.
        location: String,
        /// Bytes the registry confirmed.
        offset: u64,
    },
    /// The upload session of a blob is over (complete or abandoned).
    UploadCleared {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
    },
}

/// Key of an upload session: (registry, repository, digest).
pub type SessionKey = (String, String, Digest);

/// What a replay of the journal found.
#[derive(Debug, Default, Clone)]
pub struct Replay {
    /// Latest `BlobStored` record per digest.
    pub blobs: HashMap<Digest, (u64, String)>,
    /// Lines that could not be parsed (a torn last line, or damage).
    pub skipped_lines: usize,
    /// Latest open upload session per (registry, repository, digest).
    pub sessions: HashMap<SessionKey, (String, u64)>,
}

/// Appends records to the journal file; safe to share between threads.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` for appending.
    ///
    /// If the file does not end with a newline (a torn write), one is added so the
    /// next record starts on its own line.
    pub fn open(path: &Path) -> Result<Journal, StoreError> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)
            .map_err(|e| StoreError::io("open journal", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("stat journal", path, e))?
            .len();
        if len > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1))
                .map_err(|e| StoreError::io("seek journal", path, e))?;
            file.read_exact(&mut last)
                .map_err(|e| StoreError::io("read journal", path, e))?;
            if last[0] != b'\n' {
                file.write_all(b"\n")
                    .map_err(|e| StoreError::io("append to journal", path, e))?;
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    /// Appends one record (one `write` call, so a crash tears at most this line).
    pub fn append(&self, entry: &JournalEntry) -> Result<(), StoreError> {
        let mut line = serde_json::to_vec(entry).expect("journal entries always serialise");
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line)
            .map_err(|e| StoreError::io("append to journal", &self.path, e))
    }

    /// Flushes the journal to stable storage.
    pub fn sync(&self) -> Result<(), StoreError> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.sync_data()
            .map_err(|e| StoreError::io("fsync journal", &self.path, e))
    }
}

/// Reads every parseable record of the journal at `path`; a missing file is an empty journal.
pub fn replay(path: &Path) -> Result<Replay, StoreError> {
    let mut replay = Replay::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(replay),
        Err(e) => return Err(StoreError::io("open journal", path, e)),
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| StoreError::io("read journal", path, e))?;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match serde_json::from_slice::<JournalEntry>(&line) {
            Ok(JournalEntry::BlobStored {
                digest,
                size,
                blake3,
            }) => {
                replay.blobs.insert(digest, (size, blake3));
            }
            Ok(JournalEntry::UploadSession {
                registry,
                repository,
                digest,
                location,
                offset,
            }) => {
                replay
                    .sessions
                    .insert((registry, repository, digest), (location, offset));
            }
            Ok(JournalEntry::UploadCleared {
                registry,
                repository,
                digest,
            }) => {
                replay.sessions.remove(&(registry, repository, digest));
            }
            Err(_) => replay.skipped_lines += 1,
        }
    }
    Ok(replay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> JournalEntry {
        JournalEntry::BlobStored {
            digest: Digest::sha256_of(&[n]),
            size: n as u64,
            blake3: format!("b{n}"),
        }
    }

    #[test]
    fn replays_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        let j = Journal::open(&path).unwrap();
        j.append(&entry(1)).unwrap();
        j.append(&entry(2)).unwrap();
        let r = replay(&path).unwrap();
        assert_eq!(r.blobs.len(), 2);
        assert_eq!(r.blobs[&Digest::sha256_of(&[2])], (2, "b2".to_string()));
        assert_eq!(r.skipped_lines, 0);
    }

    #[test]
    fn torn_last_line_is_skipped_and_next_append_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.jsonl");
        {
            let j = Journal::open(&path).unwrap();
            j.append(&entry(1)).unwrap();
        }
        // Simulate a crash in the middle of writing the second record.
        let full = serde_json::to_string(&entry(2)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&full.as_bytes()[..full.len() / 2]).unwrap();
        drop(f);

        let r = replay(&path).unwrap();
        assert_eq!(r.blobs.len(), 1);
        assert_eq!(r.skipped_lines, 1);

        let j = Journal::open(&path).unwrap();
        j.append(&entry(3)).unwrap();
        let r = replay(&path).unwrap();
        assert!(r.blobs.contains_key(&Digest::sha256_of(&[3])));
        assert_eq!(r.blobs.len(), 2);
        assert_eq!(r.skipped_lines, 1);
    }

    #[test]
    fn missing_journal_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let r = replay(&dir.path().join("nope")).unwrap();
        assert!(r.blobs.is_empty());
    }
}
