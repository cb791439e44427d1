//! Safety rules for archive entries, applied before anything is read.
//!
//! ferry never writes an entry at a path taken from the archive (blobs land at
//! `blobs/<alg>/<hex>` computed from a validated digest), but a package that
//! tries path tricks is hostile or broken, so it is refused as a whole.
//! Links are never created on disk: a link whose target stays inside the
//! archive (docker-archive uses them for shared layers) is only an alias for
//! another entry; a link that points outside is refused.

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
    /// A link inside the archive: `path` is another name for `target` (both normalised).
    Link {
        /// The link's own path.
        path: String,
        /// The entry it stands for.
        target: String,
    },
    /// Nothing to read (directories, pax global headers).
    Skip,
}

/// Checks one entry's name and kind (and link target for links); returns what
/// to do with it or an error naming it.
pub fn check_entry(
    raw_name: &[u8],
    kind: EntryKind,
    link_target: Option<&[u8]>,
) -> Result<EntryAction, PackageError> {
    let shown = String::from_utf8_lossy(raw_name).into_owned();
    let refuse = |why: &str| PackageError::UnsafeEntry {
        entry: shown.clone(),
        why: why.to_owned(),
    };
    match kind {
        EntryKind::Symlink | EntryKind::Hardlink => {
            let path = match check_entry(raw_name, EntryKind::File, None)? {
                EntryAction::File(p) => p,
                _ => return Err(refuse("link with an empty name")),
            };
            let target = link_target.ok_or_else(|| refuse("link without a target"))?;
            if target.len() > MAX_NAME_BYTES {
                return Err(refuse(&format!(
                    "link target is {} bytes long, over {MAX_NAME_BYTES}",
                    target.len()
                )));
            }
            let target = std::str::from_utf8(target)
                .map_err(|_| refuse("link target is not valid UTF-8"))?;
            if target.contains('\0') {
                return Err(refuse("link target contains a NUL byte"));
            }
            if target.starts_with('/') {
                return Err(refuse(&format!(
                    "link to the absolute path {target:?} points outside the package"
                )));
            }
            let base: Vec<&str> = match kind {
                // A symlink's target is relative to the link's own directory.
                EntryKind::Symlink => path
                    .split('/')
                    .rev()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect(),
                // A hard link's target is relative to the archive root.
                _ => Vec::new(),
            };
            let resolved = resolve_inside(base, target)
                .ok_or_else(|| refuse(&format!("link to {target:?} points outside the package")))?;
            return Ok(EntryAction::Link {
                path,
                target: resolved,
            });
        }
        EntryKind::Device => return Err(refuse("device files are not allowed in image packages")),
        EntryKind::Fifo => return Err(refuse("named pipes are not allowed in image packages")),
        EntryKind::Other(t) => {
            return Err(refuse(&format!(
                "unsupported tar entry type {:?}",
                t as char
            )))
        }
        EntryKind::Metadata => return Ok(EntryAction::Skip),
        EntryKind::File | EntryKind::Directory => {}
    }
    if raw_name.len() > MAX_NAME_BYTES {
        return Err(refuse(&format!(
            "name is {} bytes long, over {MAX_NAME_BYTES}",
            raw_name.len()
        )));
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

/// Resolves `target` against `base` components; `None` if it climbs above the root.
fn resolve_inside<'a>(mut parts: Vec<&'a str>, target: &'a str) -> Option<String> {
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
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
        check_entry(name.as_bytes(), EntryKind::File, None)
    }

    #[test]
    fn normalises_harmless_names() {
        assert_eq!(
            file("./blobs/sha256/ab").unwrap(),
            EntryAction::File("blobs/sha256/ab".into())
        );
        assert_eq!(
            file("index.json").unwrap(),
            EntryAction::File("index.json".into())
        );
        assert_eq!(file("a//b/./c").unwrap(), EntryAction::File("a/b/c".into()));
        assert_eq!(
            check_entry(b"blobs/", EntryKind::Directory, None).unwrap(),
            EntryAction::Skip
        );
    }

    #[test]
    fn refuses_traversal_absolute_and_bad_names() {
        for bad in [
            "../evil",
            "blobs/../../evil",
            "/etc/passwd",
            "a/../../b",
            "..",
        ] {
            let err = file(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert!(check_entry(b"bad\xffname", EntryKind::File, None).is_err());
        assert!(check_entry(&vec![b'a'; MAX_NAME_BYTES + 1], EntryKind::File, None).is_err());
        assert!(check_entry(b"../evil", EntryKind::Directory, None).is_err());
    }

    #[test]
    fn refuses_devices_fifos_and_escaping_links() {
        for kind in [EntryKind::Device, EntryKind::Fifo, EntryKind::Other(b'Z')] {
            let err = check_entry(b"blobs/sha256/x", kind, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains("blobs/sha256/x"), "{err}");
        }
        for (kind, target) in [
            (EntryKind::Symlink, "/etc/passwd"),
            (EntryKind::Symlink, "../../../etc/passwd"),
            (EntryKind::Hardlink, "../etc/passwd"),
            (EntryKind::Hardlink, "/etc/shadow"),
        ] {
            let err = check_entry(b"blobs/sha256/x", kind, Some(target.as_bytes()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("blobs/sha256/x") && err.contains("outside"),
                "{err}"
            );
        }
    }

    #[test]
    fn links_inside_the_archive_are_aliases() {
        // skopeo's docker-archive: <id>/layer.tar -> ../<hex>.tar
        let a = check_entry(b"abc/layer.tar", EntryKind::Symlink, Some(b"../0123.tar")).unwrap();
        assert_eq!(
            a,
            EntryAction::Link {
                path: "abc/layer.tar".into(),
                target: "0123.tar".into()
            }
        );
        let h = check_entry(b"b/layer.tar", EntryKind::Hardlink, Some(b"a/layer.tar")).unwrap();
        assert_eq!(
            h,
            EntryAction::Link {
                path: "b/layer.tar".into(),
                target: "a/layer.tar".into()
            }
        );
    }

    #[test]
    fn maps_tar_types() {
        assert_eq!(kind_of_tar(tar::EntryType::Symlink), EntryKind::Symlink);
        assert_eq!(kind_of_tar(tar::EntryType::Block), EntryKind::Device);
        assert_eq!(kind_of_tar(tar::EntryType::Regular), EntryKind::File);
    }

    #[test]
    fn link_targets_with_nul_or_absurd_length_are_refused() {
        let link =
            |target: &[u8]| check_entry(b"blobs/sha256/aa", EntryKind::Symlink, Some(target));
        assert!(link(b"bb").is_ok());
        let e = link(b"bb\0../../etc/passwd").unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
        let e = link(&vec![b'a'; MAX_NAME_BYTES + 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes long"), "{e}");
    }
}
