//! Tests of the package writer against generated images.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use ferry_store::layout::image_name;
use ferry_store::{Digest, Store};
use ferry_testkit::{generate_layout, FixtureSpec};

use super::manifest::{EntryKind, PackageManifest, PACKAGE_MANIFEST};
use super::*;

pub(crate) fn fixture(dir: &Path) -> (Store, Vec<PackImage>) {
    let spec = FixtureSpec {
        seed: 7,
        images: 4,
        layers_per_image: 2,
        layer_size: 300 * 1024,
        multi_arch_every: 2,
        docker_schema2_every: 3,
        ..FixtureSpec::default()
    };
    let fx = generate_layout(&spec, dir).unwrap();
    let store = Store::open_read_only(dir).unwrap();
    (store, pack_images(&fx))
}

/// The fixture's images as the writer takes them (asked for by their names).
pub(crate) fn pack_images(fx: &ferry_testkit::Fixture) -> Vec<PackImage> {
    fx.images
        .iter()
        .map(|i| PackImage {
            name: i.reference.clone(),
            root: i.descriptor.clone(),
            requested: i.reference.clone(),
            source_digest: i.descriptor.digest.clone(),
            platforms: Vec::new(),
        })
        .collect()
}

pub(crate) fn options(compression: Compression, threads: usize) -> WriteOptions {
    WriteOptions {
        compression,
        threads,
        tool: "ferry-pack test".into(),
        options: BTreeMap::new(),
        checksum: true,
    }
}

pub(crate) fn decoded(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(&raw[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
    } else if raw.starts_with(b"\xfd7zXZ") {
        liblzma::read::XzDecoder::new_multi_decoder(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
    } else {
        out = raw;
    }
    out
}

struct TarEntry {
    name: String,
    offset: u64,
    data: Vec<u8>,
    mtime: u64,
    uid: u64,
    mode: u32,
}

fn entries(tar_bytes: &[u8]) -> Vec<TarEntry> {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let offset = e.raw_file_position();
            let h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            TarEntry {
                name,
                offset,
                data,
                mtime: h.mtime().unwrap(),
                uid: h.uid().unwrap(),
                mode: h.mode().unwrap(),
            }
        })
        .collect()
}

#[test]
fn metadata_comes_first_and_the_package_manifest_matches_every_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, images) = fixture(&tmp.path().join("cache"));
    for compression in [
        Compression::Zstd { level: 3 },
        Compression::Xz { preset: 1 },
        Compression::None,
    ] {
        let out = tmp.path().join(format!("p.{}", compression.suffix()));
        let summary = write_package(
            &store,
            &images,
            &[],
            &out,
            &options(compression, 2),
            &|_| {},
        )
        .unwrap();
        let tar_bytes = decoded(&out);
        assert_eq!(tar_bytes.len() as u64, summary.tar_bytes, "{compression:?}");
        let list = entries(&tar_bytes);
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[..3], ["oci-layout", "index.json", PACKAGE_MANIFEST]);
        let m = PackageManifest::parse(&list[2].data).unwrap();
        assert_eq!(m, summary.manifest);
        assert_eq!(m.index_json.digest, Digest::sha256_of(&list[1].data));
        // Every entry after the manifest is recorded, in order, at its offset,
        // with its digest; manifests before blobs; each blob once.
        assert_eq!(m.entries.len(), list.len() - 3);
        let mut seen_blob = false;
        for (rec, e) in m.entries.iter().zip(&list[3..]) {
            assert_eq!(rec.path, e.name);
            assert_eq!(rec.offset, e.offset, "{}", rec.path);
            assert_eq!(rec.size, e.data.len() as u64);
            assert_eq!(rec.digest, Digest::sha256_of(&e.data), "{}", rec.path);
            match rec.kind {
                EntryKind::Manifest => assert!(!seen_blob, "manifest {} after a blob", rec.path),
                EntryKind::Blob => seen_blob = true,
            }
        }
        let mut unique: Vec<&str> = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "an entry appears twice");
        for e in &list {
            assert_eq!((e.mtime, e.uid, e.mode), (0, 0, 0o644), "{}", e.name);
        }
        // index.json names every image, sorted.
        let index: ferry_store::layout::IndexJson = serde_json::from_slice(&list[1].data).unwrap();
        let named: Vec<&str> = index.manifests.iter().filter_map(image_name).collect();
        let mut want: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        want.sort();
        assert_eq!(named, want);
        // Every blob of the cache that an image needs is there (4 images' graphs).
        let in_cache = std::fs::read_dir(tmp.path().join("cache/blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(
            m.entries.len(),
            in_cache,
            "the fixture's store holds exactly the packed graphs"
        );
    }
}

#[test]
fn same_images_give_the_same_bytes_whatever_the_thread_count_and_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut images) = fixture(&tmp.path().join("cache"));
    for compression in [
        Compression::Zstd { level: 3 },
        Compression::Xz { preset: 1 },
    ] {
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        let sa =
            write_package(&store, &images, &[], &a, &options(compression, 1), &|_| {}).unwrap();
        images.reverse();
        let sb =
            write_package(&store, &images, &[], &b, &options(compression, 4), &|_| {}).unwrap();
        assert_eq!(sa.sha256, sb.sha256, "{compression:?}");
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
        assert_eq!(
            Digest::sha256_of(&std::fs::read(&a).unwrap()),
            sa.sha256.clone().expect("checksum asked for")
        );
        // Without --checksum: no whole-file hash, the same bytes.
        let c = tmp.path().join("c");
        let unhashed = WriteOptions {
            checksum: false,
            ..options(compression, 2)
        };
        let sc = write_package(&store, &images, &[], &c, &unhashed, &|_| {}).unwrap();
        assert_eq!(sc.sha256, None);
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&c).unwrap());
    }
    // Every compression carries the same entries (the package manifest
    // records the compression, so only it differs).
    let plain = tmp.path().join("plain.tar");
    write_package(
        &store,
        &images,
        &[],
        &plain,
        &options(Compression::None, 2),
        &|_| {},
    )
    .unwrap();
    let zst = tmp.path().join("z");
    write_package(
        &store,
        &images,
        &[],
        &zst,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
    )
    .unwrap();
    let a = entries(&decoded(&zst));
    let b = entries(&std::fs::read(&plain).unwrap());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        assert!(
            x.name == PACKAGE_MANIFEST || x.data == y.data,
            "{} differs",
            x.name
        );
    }
}

/// Parses the seek table at the end of a seekable zstd file.
fn seek_table(raw: &[u8]) -> Vec<(u32, u32)> {
    let n = raw.len();
    assert_eq!(&raw[n - 4..], &0x8F92_EAB1u32.to_le_bytes());
    assert_eq!(raw[n - 5], 0x80);
    let frames = u32::from_le_bytes(raw[n - 9..n - 5].try_into().unwrap()) as usize;
    let table = &raw[n - 9 - frames * 12..n - 9];
    let header = &raw[n - 9 - frames * 12 - 8..n - 9 - frames * 12];
    assert_eq!(&header[..4], &0x184D_2A5Eu32.to_le_bytes());
    table
        .chunks(12)
        .map(|c| {
            (
                u32::from_le_bytes(c[..4].try_into().unwrap()),
                u32::from_le_bytes(c[4..8].try_into().unwrap()),
            )
        })
        .collect()
}

#[test]
fn zstd_frames_start_at_every_entry_so_any_blob_decodes_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = FixtureSpec {
        seed: 3,
        images: 2,
        layers_per_image: 2,
        layer_size: 9 << 20, // larger than a frame: split into several
        incompressible: true,
        ..FixtureSpec::default()
    };
    let fx = generate_layout(&spec, &tmp.path().join("cache")).unwrap();
    let store = Store::open_read_only(&tmp.path().join("cache")).unwrap();
    let images = pack_images(&fx);
    let out = tmp.path().join("p.tar.zst");
    let s = write_package(
        &store,
        &images,
        &[],
        &out,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
    )
    .unwrap();
    let raw = std::fs::read(&out).unwrap();
    let table = seek_table(&raw);
    assert_eq!(table.len() as u64, s.frames);
    // Frame starts, in compressed and uncompressed offsets.
    let mut starts = Vec::new();
    let (mut c, mut d) = (0u64, 0u64);
    for (cs, ds) in &table {
        assert!(*ds as usize <= frames::ZSTD_FRAME_MAX);
        starts.push((c, d));
        c += *cs as u64;
        d += *ds as u64;
    }
    assert_eq!(d, s.tar_bytes);
    for rec in &s.manifest.entries {
        let header = rec.offset - 512;
        let first = starts
            .iter()
            .position(|(_, ud)| *ud == header)
            .unwrap_or_else(|| panic!("no frame starts at entry {}", rec.path));
        // Decode only the frames of this entry.
        let mut bytes = Vec::new();
        let mut i = first;
        while (bytes.len() as u64) < 512 + rec.size {
            let (cs, _) = table[i];
            let (co, _) = starts[i];
            let frame = &raw[co as usize..co as usize + cs as usize];
            bytes.extend(zstd::bulk::decompress(frame, frames::ZSTD_FRAME_MAX).unwrap());
            i += 1;
        }
        let data = &bytes[512..512 + rec.size as usize];
        assert_eq!(Digest::sha256_of(data), rec.digest, "{}", rec.path);
    }
    assert!(
        table.len() > s.manifest.entries.len() + 3,
        "large blobs span several frames"
    );
}

#[test]
fn a_corrupt_or_missing_cache_blob_writes_nothing_and_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let (store, images) = fixture(&dir);
    let out = tmp.path().join("p.tar.zst");
    // Flip a byte in one layer (same size).
    let m = write_package(
        &store,
        &images,
        &[],
        &out,
        &options(Compression::None, 1),
        &|_| {},
    )
    .unwrap()
    .manifest;
    std::fs::remove_file(&out).unwrap();
    let layer = m
        .entries
        .iter()
        .rfind(|e| e.kind == EntryKind::Blob)
        .unwrap();
    let path = store.blob_path(&layer.digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = write_package(
        &store,
        &images,
        &[],
        &out,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err, PackError::CorruptCache { ref digest, .. } if *digest == layer.digest),
        "{err}"
    );
    assert!(err.to_string().contains(&layer.digest.to_string()));
    assert!(!out.exists() && !temp_path(&out).exists());
    assert!(
        !path.exists(),
        "the corrupt blob is dropped from the cache so a rerun fetches it"
    );
    // Now it is missing: named as such, before anything is written.
    let err = write_package(
        &store,
        &images,
        &[],
        &out,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, PackError::Incomplete { .. }), "{err}");
    assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");
    assert!(!out.exists() && !temp_path(&out).exists());
}

#[test]
fn two_images_with_one_name_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, mut images) = fixture(&tmp.path().join("cache"));
    let mut twin = images[1].clone();
    twin.name = images[0].name.clone();
    images.push(twin);
    let out = tmp.path().join("p");
    let err = write_package(
        &store,
        &images,
        &[],
        &out,
        &options(Compression::None, 1),
        &|_| {},
    )
    .unwrap_err();
    assert!(matches!(err, PackError::DuplicateName(_)), "{err}");
    assert!(!out.exists());
}

fn audit(path: &Path) -> ferry_store::audit::AuditReport {
    crate::audit::audit_package(path, 2, std::sync::Arc::new(Default::default())).unwrap()
}

/// Replaces `from` by `to` (same length) inside the plain tar's package
/// manifest, as a tampered or buggy package would carry it.
fn tamper(tar: &Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let mut bytes = std::fs::read(tar).unwrap();
    let at = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not in the package"));
    bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
    std::fs::write(tar, bytes).unwrap();
}

#[test]
fn verify_checks_the_package_manifest_against_the_content() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, images) = fixture(&tmp.path().join("cache"));
    let zst = tmp.path().join("p.tar.zst");
    write_package(
        &store,
        &images,
        &[],
        &zst,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
    )
    .unwrap();
    let clean = audit(&zst);
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert!(
        clean
            .info
            .notes
            .iter()
            .any(|n| n.contains("ferry-package.json checked")),
        "{:?}",
        clean.info.notes
    );

    // An offset that does not match where the entry is.
    let tar = tmp.path().join("p.tar");
    let m = write_package(
        &store,
        &images,
        &[],
        &tar,
        &options(Compression::None, 1),
        &|_| {},
    )
    .unwrap()
    .manifest;
    let victim = &m.entries[2];
    // Same number of digits, another value: the last digit moves by one.
    let from = format!("\"offset\":{}", victim.offset);
    let to = format!(
        "\"offset\":{}{}",
        victim.offset / 10,
        (victim.offset % 10 + 1) % 10
    );
    tamper(&tar, &from, &to);
    let r = audit(&tar);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert_eq!(p.entry.as_deref(), Some(victim.path.as_str()));
    assert_eq!(p.digest.as_ref(), Some(&victim.digest));
    assert!(p.kind.to_string().contains("offset"), "{}", p.kind);

    // index.json not the one the manifest pins.
    write_package(
        &store,
        &images,
        &[],
        &tar,
        &options(Compression::None, 1),
        &|_| {},
    )
    .unwrap();
    let pinned = m.index_json.digest.to_string();
    let mut other = pinned.clone();
    let flip = if other.ends_with('0') { "1" } else { "0" };
    other.replace_range(other.len() - 1.., flip);
    tamper(&tar, &pinned, &other);
    let r = audit(&tar);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert!(
        r.problems[0]
            .kind
            .to_string()
            .contains("index.json hashes to"),
        "{}",
        r.problems[0].kind
    );
}

/// Writes sample packages to `FERRY_PACK_SAMPLE_DIR` for trying third-party
/// tools by hand (skipped without it).
#[test]
fn sample_packages_for_third_party_tools() {
    let Some(dir) = std::env::var_os("FERRY_PACK_SAMPLE_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let (store, images) = fixture(&dir.join("cache"));
    for c in [
        Compression::Zstd { level: 3 },
        Compression::Xz { preset: 6 },
        Compression::None,
    ] {
        let out = dir.join(format!("sample.{}", c.suffix()));
        write_package(&store, &images, &[], &out, &options(c, 2), &|_| {}).unwrap();
    }
}

#[test]
fn export_stores_the_images_and_not_the_package_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images) = fixture(&tmp.path().join("cache"));
    let out = tmp.path().join("p.tar.zst");
    let s = write_package(
        &cache,
        &images,
        &[],
        &out,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
    )
    .unwrap();
    let store = Store::open_for_write(&tmp.path().join("store")).unwrap();
    let options = crate::ImportOptions {
        progress: Default::default(),
        threads: 2,
        present_check: crate::PresentCheck::Full,
    };
    crate::import_package(&out, &store, &options).unwrap();
    let stored = std::fs::read_dir(tmp.path().join("store/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(
        stored,
        s.manifest.entries.len(),
        "one stored blob per packaged entry, nothing else"
    );
    let names: Vec<String> = store
        .index_entries()
        .unwrap()
        .iter()
        .filter_map(|d| image_name(d).map(str::to_owned))
        .collect();
    assert_eq!(names.len(), images.len());
}

#[test]
fn written_while_blobs_arrive_gives_the_same_bytes_and_a_missing_one_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (full, images) = fixture(&src);
    let whole = tmp.path().join("whole.tar.zst");
    let want = write_package(
        &full,
        &images,
        &[],
        &whole,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
    )
    .unwrap();
    // A cache holding only the manifests; the blobs arrive on another thread.
    let cache_dir = tmp.path().join("cache");
    std::fs::create_dir_all(cache_dir.join("blobs/sha256")).unwrap();
    for f in ["oci-layout", "index.json"] {
        std::fs::copy(src.join(f), cache_dir.join(f)).unwrap();
    }
    let blobs: Vec<_> = want.manifest.entries.clone();
    for e in blobs.iter().filter(|e| e.kind == EntryKind::Manifest) {
        std::fs::copy(full.blob_path(&e.digest), cache_dir.join(&e.path)).unwrap();
    }
    let cache = Store::open_read_only(&cache_dir).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    // Arrivals count as verified (the puller hashed them): only the size is checked.
    let arrived = |d: &ferry_store::Descriptor| loop {
        if cache.has_blob(&d.digest, d.size) {
            return Arrival::Verified;
        }
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            return if cache.has_blob(&d.digest, d.size) {
                Arrival::Verified
            } else {
                Arrival::Never
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let out = tmp.path().join("as-pulled.tar.zst");
    std::thread::scope(|s| {
        s.spawn(|| {
            for e in blobs.iter().filter(|e| e.kind == EntryKind::Blob) {
                std::thread::sleep(std::time::Duration::from_millis(3));
                let tmp_path = cache_dir.join(format!("{}.tmp", e.path));
                std::fs::copy(full.blob_path(&e.digest), &tmp_path).unwrap();
                std::fs::rename(&tmp_path, cache_dir.join(&e.path)).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let got = write_package_as_pulled(
            &cache,
            &images,
            &[],
            &out,
            &options(Compression::Zstd { level: 3 }, 2),
            &|_| {},
            &arrived,
        )
        .unwrap();
        assert_eq!(got.sha256, want.sha256);
    });
    // A blob that never comes: an error naming it, nothing at the final path.
    let last = blobs.iter().rfind(|e| e.kind == EntryKind::Blob).unwrap();
    std::fs::remove_file(cache_dir.join(&last.path)).unwrap();
    let out = tmp.path().join("never.tar.zst");
    let err = write_package_as_pulled(
        &cache,
        &images,
        &[],
        &out,
        &options(Compression::Zstd { level: 3 }, 2),
        &|_| {},
        &arrived,
    )
    .unwrap_err();
    assert!(err.to_string().contains(&last.digest.to_string()), "{err}");
    assert!(!out.exists() && !temp_path(&out).exists());
}
