//! Nested image archives: a package (a tar, compressed or not, or a directory)
//! holding one `docker save` / `podman save` docker-archive or oci-archive per
//! image, each possibly compressed. An entry is taken for an image archive by
//! its content, never its name: the first tar header of its (decompressed)
//! head must name an image archive's top-level file (`blobs/`, `oci-layout`,
//! `index.json`, `manifest.json`, `repositories`, or a docker-archive's
//! `<64 hex>.tar`/`.json`/`<64 hex>/`). A docker-archive's own layers are
//! `.tar` files too, but they start with root filesystem paths.

use std::io::{BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::collect::EntryFailure;
use crate::decompress::{CountingReader, Decompressed};
use crate::detect::{detect_bytes, Compression, PackageFormat};
use crate::entries::{format_name, walk_archive, EntryHandler};
use crate::error::PackageError;
use crate::header_guard::HeaderGuard;

/// Raw bytes of an entry read ahead (in memory) to decide whether it is an
/// image archive; the decision never needs more.
pub const HEAD_BYTES: usize = 64 << 10;

/// How deep image archives may nest: a package holding image archives, never
/// an image archive holding another.
pub const MAX_NESTING: u32 = 1;

/// The compression of the image archive whose first raw bytes are `head`, or
/// `None` when `head` does not start one.
pub fn image_archive(head: &[u8]) -> Option<Compression> {
    let Some(PackageFormat::Archive(compression)) = detect_bytes(&head[..head.len().min(512)])
    else {
        return None;
    };
    let tar_head = decompressed_head(head, compression, 1024);
    if detect_bytes(&tar_head[..tar_head.len().min(512)])
        != Some(PackageFormat::Archive(Compression::None))
    {
        return None;
    }
    let first = header_name(&tar_head[..512]);
    let first = first.trim_start_matches("./");
    if first.is_empty() || first == "." {
        // `tar -C DIR -cf - .`: the root directory first, then the real entries.
        return (tar_head.len() >= 1024
            && starts_image_archive(header_name(&tar_head[512..1024]).trim_start_matches("./")))
        .then_some(compression);
    }
    starts_image_archive(first).then_some(compression)
}

/// Reads the first [`HEAD_BYTES`] (or all, when smaller) of the entry `path`
/// of `size` bytes: what [`image_archive`] decides from.
pub(crate) fn read_head(
    path: &str,
    size: u64,
    reader: &mut dyn Read,
) -> Result<Vec<u8>, EntryFailure> {
    let want = size.min(HEAD_BYTES as u64);
    let mut head = Vec::with_capacity(want as usize);
    reader
        .take(want)
        .read_to_end(&mut head)
        .map_err(|e| EntryFailure::Input(format!("reading entry {path:?}: {e}")))?;
    if (head.len() as u64) < want {
        return Err(EntryFailure::Input(format!(
            "entry {path:?} is truncated: header says {size} bytes, only {} present",
            head.len()
        )));
    }
    Ok(head)
}

/// Walks the image archive in entry `path` (its whole content from `reader`)
/// with the package's safety rules, entries to `handler`, and checks that its
/// stream ends cleanly. A corrupt or truncated archive is
/// [`PackageError::Corrupt`] naming the entry.
pub(crate) fn walk_image_archive(
    path: &str,
    compression: Compression,
    reader: &mut dyn Read,
    handler: &mut dyn EntryHandler,
) -> Result<(), PackageError> {
    let format = format_name(compression);
    let read = Arc::new(AtomicU64::new(0));
    let corrupt = |cause: String| PackageError::Corrupt {
        path: path.into(),
        format,
        offset: read.load(Ordering::Relaxed),
        cause,
    };
    let counted = CountingReader::new(reader, read.clone());
    let decoder = Decompressed::over(BufReader::new(counted), compression, 1)
        .map_err(|e| corrupt(e.to_string()))?;
    let mut archive = tar::Archive::new(HeaderGuard::new(decoder));
    walk_archive(&mut archive, handler, &corrupt)?;
    archive
        .into_inner()
        .into_inner()
        .finish()
        .map_err(|e| corrupt(e.to_string()))
}

/// Up to `want` decompressed bytes of `head` (fewer when `head` holds fewer).
fn decompressed_head(head: &[u8], compression: Compression, want: usize) -> Vec<u8> {
    let mut out = vec![0u8; want];
    let Ok(mut decoder) = Decompressed::over(head, compression, 1) else {
        return Vec::new();
    };
    let mut n = 0;
    while n < want {
        match decoder.read(&mut out[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    out.truncate(n);
    out
}

/// The entry name in a 512-byte tar header (with the ustar prefix).
fn header_name(block: &[u8]) -> String {
    let header = tar::Header::from_byte_slice(block);
    String::from_utf8_lossy(&header.path_bytes()).into_owned()
}

/// Whether an archive whose first entry is `name` is an image archive.
fn starts_image_archive(name: &str) -> bool {
    let top = name.split('/').next().unwrap_or_default();
    if matches!(
        top,
        "blobs" | "oci-layout" | "index.json" | "manifest.json" | "repositories"
    ) {
        return true;
    }
    let stem = top
        .strip_suffix(".tar")
        .or_else(|| top.strip_suffix(".json"))
        .unwrap_or(top);
    stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(names: &[&str]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for name in names {
            let mut h = tar::Header::new_ustar();
            h.set_size(3);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &b"abc"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn image_archives_are_told_from_layers_by_content() {
        let hex = "a".repeat(64);
        for first in [
            "blobs/sha256/x".to_owned(),
            "oci-layout".to_owned(),
            "manifest.json".to_owned(),
            format!("{hex}.tar"),
            format!("{hex}/layer.tar"),
            format!("./{hex}.json"),
        ] {
            let t = tar_of(&[&first, "etc/x"]);
            assert_eq!(image_archive(&t), Some(Compression::None), "{first}");
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            std::io::Write::write_all(&mut gz, &t).unwrap();
            assert_eq!(
                image_archive(&gz.finish().unwrap()),
                Some(Compression::Gzip)
            );
            let zst = zstd::encode_all(&t[..], 1).unwrap();
            assert_eq!(image_archive(&zst), Some(Compression::Zstd));
        }
        // A layer: root filesystem paths, even when named like an archive.
        for first in ["etc/passwd", "./usr/bin/x", "layer.tar", "hello"] {
            assert_eq!(image_archive(&tar_of(&[first])), None, "{first}");
        }
        assert_eq!(image_archive(b"not a tar at all"), None);
        assert_eq!(image_archive(&[0x1f, 0x8b, 8, 0]), None, "truncated gzip");
    }

    /// An oci-archive naming `name` an image whose config is `config`.
    fn oci_archive(name: &str, config: &[u8]) -> Vec<u8> {
        use ferry_store::{media, Descriptor, Digest};
        let config_desc = Descriptor::new(
            media::OCI_CONFIG,
            Digest::sha256_of(config),
            config.len() as u64,
        );
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": config_desc, "layers": [],
        }))
        .unwrap();
        let digest = Digest::sha256_of(&manifest);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": digest.to_string(),
                "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": name}}],
        }))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in [
            (
                "oci-layout".to_owned(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            (
                format!("blobs/sha256/{}", config_desc.digest.hex()),
                config.to_vec(),
            ),
            (format!("blobs/sha256/{}", digest.hex()), manifest),
            ("index.json".to_owned(), index),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, path, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn import_dir(
        archives: &[(&str, Vec<u8>)],
    ) -> (tempfile::TempDir, Result<Vec<String>, String>) {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg");
        std::fs::create_dir_all(&pkg).unwrap();
        for (name, bytes) in archives {
            std::fs::write(pkg.join(name), bytes).unwrap();
        }
        let store = ferry_store::Store::open_for_write(&dir.path().join("store")).unwrap();
        let options = crate::ImportOptions {
            progress: Default::default(),
            threads: 1,
            present_check: Default::default(),
        };
        let result = crate::import_package(&pkg, &store, &options)
            .map(|r| {
                let mut names: Vec<String> = r.images.into_iter().map(|i| i.name).collect();
                names.sort();
                names
            })
            .map_err(|e| e.to_string());
        let named = store.index_entries().unwrap().len();
        if result.is_err() {
            assert_eq!(named, 0, "a failed import named images");
        }
        (dir, result)
    }

    #[test]
    fn image_archives_are_named_together_and_a_name_means_one_image() {
        let a = oci_archive("example.com/a:1", b"{\"a\":1}");
        let b = oci_archive("example.com/b:1", b"{\"b\":1}");
        let (_d, names) = import_dir(&[("a.tar", a.clone()), ("b.tar", b)]);
        assert_eq!(
            names.unwrap(),
            vec!["example.com/a:1".to_owned(), "example.com/b:1".to_owned()]
        );
        // The same image in two archives is one image.
        let (_d, names) = import_dir(&[("a.tar", a.clone()), ("a-again.tar", a.clone())]);
        assert_eq!(names.unwrap(), vec!["example.com/a:1".to_owned()]);
        // The same name for two different images: refused, nothing named.
        let other = oci_archive("example.com/a:1", b"{\"other\":1}");
        let (_d, names) = import_dir(&[("a.tar", a), ("z.tar", other)]);
        let err = names.unwrap_err();
        assert!(
            err.contains("z.tar") && err.contains("example.com/a:1"),
            "{err}"
        );
    }
}
