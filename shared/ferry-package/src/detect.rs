//! Package format detection by content (magic bytes), never by file name.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::PackageError;

/// Compression of a tar package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// xz (single- or multi-block).
    Xz,
    /// zstd (one or more frames).
    Zstd,
}

/// Where a package's entries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageFormat {
    /// A tar archive, possibly compressed.
    Archive(Compression),
    /// A directory holding an OCI image layout.
    LayoutDir,
}

impl fmt::Display for PackageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PackageFormat::Archive(Compression::None) => "tar",
            PackageFormat::Archive(Compression::Gzip) => "tar.gz",
            PackageFormat::Archive(Compression::Xz) => "tar.xz",
            PackageFormat::Archive(Compression::Zstd) => "tar.zst",
            PackageFormat::LayoutDir => "OCI layout directory",
        })
    }
}

/// Detects the format of `path` from its first bytes.
pub fn detect(path: &Path) -> Result<PackageFormat, PackageError> {
    let meta = std::fs::metadata(path).map_err(|source| PackageError::Io {
        path: path.into(),
        source,
    })?;
    if meta.is_dir() {
        return Ok(PackageFormat::LayoutDir);
    }
    let mut head = [0u8; 512];
    let mut file = File::open(path).map_err(|source| PackageError::Io {
        path: path.into(),
        source,
    })?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(source) => {
                return Err(PackageError::Io {
                    path: path.into(),
                    source,
                })
            }
        }
    }
    detect_bytes(&head[..n]).ok_or_else(|| PackageError::NotAPackage {
        path: path.into(),
        why: if n == 0 {
            "the file is empty".into()
        } else {
            "not a tar, tar.gz, tar.xz or tar.zst (unknown magic bytes)".into()
        },
    })
}

/// Detects a format from the first (up to 512) bytes of a file.
pub fn detect_bytes(head: &[u8]) -> Option<PackageFormat> {
    if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(PackageFormat::Archive(Compression::Xz))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(PackageFormat::Archive(Compression::Zstd))
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(PackageFormat::Archive(Compression::Gzip))
    } else if (head.len() >= 262 && &head[257..262] == b"ustar")
        || (head.len() == 512 && looks_like_v7_tar(head))
    {
        Some(PackageFormat::Archive(Compression::None))
    } else {
        None
    }
}

/// A pre-POSIX tar header has no magic; accept it when its checksum is right.
fn looks_like_v7_tar(h: &[u8]) -> bool {
    let stored = std::str::from_utf8(&h[148..156])
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok());
    let sum: u32 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    stored == Some(sum) && h[0] != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic() {
        assert_eq!(
            detect_bytes(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Some(PackageFormat::Archive(Compression::Xz))
        );
        assert_eq!(
            detect_bytes(&[0x28, 0xb5, 0x2f, 0xfd, 1]),
            Some(PackageFormat::Archive(Compression::Zstd))
        );
        assert_eq!(
            detect_bytes(&[0x1f, 0x8b, 8]),
            Some(PackageFormat::Archive(Compression::Gzip))
        );
        let mut tar = vec![0u8; 512];
        tar[..5].copy_from_slice(b"hello");
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(
            detect_bytes(&tar),
            Some(PackageFormat::Archive(Compression::None))
        );
        assert_eq!(detect_bytes(b"PK\x03\x04 a zip file"), None);
        assert_eq!(detect_bytes(&[0u8; 512]), None);
    }

    #[test]
    fn name_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("package.tar.xz");
        std::fs::write(&p, [0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap();
        assert_eq!(
            detect(&p).unwrap(),
            PackageFormat::Archive(Compression::Zstd)
        );
        std::fs::write(&p, b"").unwrap();
        assert!(detect(&p).unwrap_err().to_string().contains("empty"));
    }
}
