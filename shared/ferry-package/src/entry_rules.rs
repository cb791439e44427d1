//! Safety rules for archive entries, applied before anything is read.
//!
//! ferry never writes an entry at a path taken from the archive (blobs land at
//! `blobs/<alg>/<hex>` computed from a validated digest), but a package that
//! tries path tricks is hostile or broken, so it is refused as a whole.

use crate::error::PackageError;

/// Longest entry name accepted.
pub const MAX_NAME_BYTES: usize = 1024;

/// The kind of an archive entry, independent of the tar library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file.
    File,
    /// Directory (nothing to do).
    Directory,
    /// Symbolic link.
    Symlink,
    /// Hard link.
    Hardlink,
    /// Character or block device.
    Device,
    /// Named pipe.
    Fifo,
    /// Metadata-only header (pax global header and similar): skipped.
    Metadata,
    /// Anything else.
    Other(u8),
}

/// What to do with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryAction {
    /// A regular file at this normalised relative path.
    File(String),
    /// Nothing to read (directories, pax global headers).
    Skip,
}

/// Checks one entry's name and kind; returns its normalised path or an error naming it.
pub fn check_entry(raw_name: &[u8], kind: EntryKind) -> Result<EntryAction, PackageError> {
    let shown = String::from_utf8_lossy(raw_name).into_owned();
    let refuse = |why: &str| PackageError::UnsafeEntry { entry: shown.clone(), why: why.to_owned() };
    match kind {
        EntryKind::Symlink => return Err(refuse("symbolic links are not allowed in image packages")),
        EntryKind::Hardlink => return Err(refuse("hard links are not allowed in image packages")),
        EntryKind::Device => return Err(refuse("device files are not allowed in image packages")),
        EntryKind::Fifo => return Err(refuse("named pipes are not allowed in image packages")),
        EntryKind::Other(t) => return Err(refuse(&format!("unsupported tar entry type {:?}", t as char))),
        EntryKind::Metadata => return Ok(EntryAction::Skip),
        EntryKind::File | EntryKind::Directory => {}
    }
    if raw_name.len() > MAX_NAME_BYTES {
        return Err(refuse(&format!("name is {} bytes long, over {MAX_NAME_BYTES}", raw_name.len())));
    }
    let name = std::str::from_utf8(raw_name).map_err(|_| refuse("name is not valid UTF-8"))?;
    if name.contains('\0') {
        return Err(refuse("name contains a NUL byte"));
    }
    if name.starts_with('/') {
        return Err(refuse("absolute paths are not allowed"));
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse("path traversal ('..') is not allowed")),
            p => parts.push(p),
        }
    }
    if kind == EntryKind::Directory || parts.is_empty() {
        return Ok(EntryAction::Skip);
    }
    Ok(EntryAction::File(parts.join("/")))
}

/// Maps a tar header type to an [`EntryKind`].
pub fn kind_of_tar(t: tar::EntryType) -> EntryKind {
    use tar::EntryType as T;
    match t {
        T::Regular | T::Continuous => EntryKind::File,
        T::Directory => EntryKind::Directory,
        T::Symlink => EntryKind::Symlink,
        T::Link => EntryKind::Hardlink,
        T::Char | T::Block => EntryKind::Device,
        T::Fifo => EntryKind::Fifo,
        T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => EntryKind::Metadata,
        other => EntryKind::Other(other.as_byte()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Result<EntryAction, PackageError> {
        check_entry(name.as_bytes(), EntryKind::File)
    }

    #[test]
    fn normalises_harmless_names() {
        assert_eq!(file("./blobs/sha256/ab").unwrap(), EntryAction::File("blobs/sha256/ab".into()));
        assert_eq!(file("index.json").unwrap(), EntryAction::File("index.json".into()));
        assert_eq!(file("a//b/./c").unwrap(), EntryAction::File("a/b/c".into()));
        assert_eq!(check_entry(b"blobs/", EntryKind::Directory).unwrap(), EntryAction::Skip);
    }

    #[test]
    fn refuses_traversal_absolute_and_bad_names() {
        for bad in ["../evil", "blobs/../../evil", "/etc/passwd", "a/../../b", ".."] {
            let err = file(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert!(check_entry(b"bad\xffname", EntryKind::File).is_err());
        assert!(check_entry(&vec![b'a'; MAX_NAME_BYTES + 1], EntryKind::File).is_err());
        assert!(check_entry(b"../evil", EntryKind::Directory).is_err());
    }

    #[test]
    fn refuses_links_devices_and_fifos() {
        for kind in [EntryKind::Symlink, EntryKind::Hardlink, EntryKind::Device, EntryKind::Fifo, EntryKind::Other(b'Z')] {
            let err = check_entry(b"blobs/sha256/x", kind).unwrap_err().to_string();
            assert!(err.contains("blobs/sha256/x"), "{err}");
        }
    }

    #[test]
    fn maps_tar_types() {
        assert_eq!(kind_of_tar(tar::EntryType::Symlink), EntryKind::Symlink);
        assert_eq!(kind_of_tar(tar::EntryType::Block), EntryKind::Device);
        assert_eq!(kind_of_tar(tar::EntryType::Regular), EntryKind::File);
    }
}
