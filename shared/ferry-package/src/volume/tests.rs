//! Volume sets against generated images: sizes, each volume alone, the
//! logical package equal to the single package, rebuilds, partial sets,
//! foreign volumes.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::pack::tests::{decoded, fixture, options};
use crate::pack::{write_package, Compression};

use super::read::check_volume;
use super::*;

fn split(
    dir: &Path,
    cache: &ferry_store::Store,
    images: &[crate::pack::PackImage],
    c: Compression,
    size: u64,
    parity: u32,
) -> VolumeSetSummary {
    std::fs::create_dir_all(dir).unwrap();
    write_volume_set(
        cache,
        images,
        &[],
        &dir.join("pkg"),
        &options(c, 2),
        &VolumeOptions {
            volume_size: size,
            parity,
        },
        &|_| {},
    )
    .unwrap()
}

fn logical(inputs: &[PathBuf]) -> (Vec<u8>, VolumeSet) {
    let mut set = VolumeSet::open(inputs, None).unwrap();
    let mut out = Vec::new();
    set.reader().read_to_end(&mut out).unwrap();
    (out, set)
}

#[test]
fn every_volume_fits_verifies_alone_and_rejoins_to_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images) = fixture(&tmp.path().join("cache"));
    for c in [
        Compression::Zstd { level: 3 },
        Compression::Xz { preset: 1 },
        Compression::None,
    ] {
        let single = tmp.path().join(format!("single.{}", c.suffix()));
        let s = write_package(&cache, &images, &[], &single, &options(c, 2), &|_| {}).unwrap();
        let largest = s.manifest.entries.iter().map(|e| e.size).max().unwrap();
        let expected = decoded(&single);
        for size in [200 * 1024, largest + 100_000, 1_000_000] {
            let dir = tmp.path().join(format!("{}-{size}", c.suffix()));
            let sum = split(&dir, &cache, &images, c, size, 2);
            let data = sum.files.iter().filter(|f| f.role == Role::Data).count();
            assert!(data >= 2, "{size}: {data} volumes");
            for f in &sum.files {
                let len = std::fs::metadata(&f.path).unwrap().len();
                assert!(
                    len <= size,
                    "{} is {len} bytes, over {size}",
                    f.path.display()
                );
                assert_eq!(len, f.bytes);
                let check = check_volume(&f.path).unwrap();
                assert!(
                    check.problems.is_empty(),
                    "{}: {:?}",
                    f.path.display(),
                    check.problems
                );
            }
            let (out, set) = logical(std::slice::from_ref(&dir));
            assert!(set.waiting.is_empty() && set.rebuilt.is_empty());
            assert!(
                out == expected,
                "{c:?} {size}: the logical package differs from the single package"
            );
            if size < largest {
                assert!(sum.split_entries > 0);
            }
        }
    }
}

#[test]
fn any_order_rebuilds_and_partial_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images) = fixture(&tmp.path().join("cache"));
    let c = Compression::Zstd { level: 3 };
    let single = tmp.path().join("single.tar.zst");
    write_package(&cache, &images, &[], &single, &options(c, 2), &|_| {}).unwrap();
    let expected = decoded(&single);
    let dir = tmp.path().join("set");
    let sum = split(&dir, &cache, &images, c, 400 * 1024, 2);
    let data: Vec<PathBuf> = sum
        .files
        .iter()
        .filter(|f| f.role == Role::Data)
        .map(|f| f.path.clone())
        .collect();
    assert!(data.len() >= 5, "{} data volumes", data.len());
    // Any order, as files.
    let mut files: Vec<PathBuf> = sum.files.iter().map(|f| f.path.clone()).rev().collect();
    files.swap(0, 2);
    assert!(logical(&files).0 == expected);

    // Only a byte flipped (found while reading, mid-volume): rebuilt, read on from there.
    let pristine = std::fs::read(&data[2]).unwrap();
    let mut bytes = pristine.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&data[2], &bytes).unwrap();
    let (out, set) = logical(std::slice::from_ref(&dir));
    assert!(out == expected);
    assert_eq!(
        set.rebuilt.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![3]
    );
    assert!(
        set.rebuilt[0].reason.contains("damaged"),
        "{}",
        set.rebuilt[0].reason
    );
    drop(set);
    std::fs::write(&data[2], &pristine).unwrap();
    // One, then two missing: rebuilt.
    let hold = tmp.path().join("hold");
    std::fs::create_dir_all(&hold).unwrap();
    let take =
        |i: usize| std::fs::rename(&data[i], hold.join(data[i].file_name().unwrap())).unwrap();
    let give =
        |i: usize| std::fs::rename(hold.join(data[i].file_name().unwrap()), &data[i]).unwrap();
    take(1);
    let (out, set) = logical(std::slice::from_ref(&dir));
    assert!(out == expected);
    assert_eq!(
        set.rebuilt.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![2]
    );
    drop(set);
    take(3);
    let (out, set) = logical(std::slice::from_ref(&dir));
    assert!(out == expected);
    assert_eq!(
        set.rebuilt.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![2, 4]
    );
    drop(set);
    give(3);
    // One missing and a byte flipped in another (found while reading).
    let mut bytes = std::fs::read(&data[2]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&data[2], &bytes).unwrap();
    let (out, set) = logical(std::slice::from_ref(&dir));
    assert!(out == expected);
    let mut rebuilt: Vec<u32> = set.rebuilt.iter().map(|r| r.index).collect();
    rebuilt.sort();
    assert_eq!(rebuilt, vec![2, 3]);
    drop(set);
    assert!(
        !check_volume(&data[2]).unwrap().problems.is_empty(),
        "the flipped volume fails alone"
    );

    // Three bad: the complete images only, the others named with their volumes.
    take(3);
    let mut set = VolumeSet::open(std::slice::from_ref(&dir), None).unwrap();
    assert_eq!(set.missing(), vec![2, 3, 4]);
    assert!(!set.waiting.is_empty());
    let msg = set.missing_message().unwrap();
    assert!(msg.contains("2, 3, 4"), "{msg}");
    let mut out = Vec::new();
    set.reader().read_to_end(&mut out).unwrap();
    let mut a = tar::Archive::new(&out[..]);
    let names: Vec<String> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.len() > 3);
    let waiting = set.waiting.len();
    assert!(waiting < images.len(), "some images are complete");
}

#[test]
fn a_volume_of_another_set_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images) = fixture(&tmp.path().join("cache"));
    let c = Compression::Zstd { level: 3 };
    let a = split(&tmp.path().join("a"), &cache, &images, c, 400 * 1024, 1);
    let b = split(
        &tmp.path().join("b"),
        &cache,
        &images[..2],
        c,
        400 * 1024,
        1,
    );
    let mut files: Vec<PathBuf> = a.files.iter().map(|f| f.path.clone()).collect();
    files.push(b.files[0].path.clone());
    match VolumeSet::open(&files, None) {
        Err(VolumeError::Foreign { foreign, .. }) => assert_eq!(foreign[0].0, b.files[0].path),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a foreign volume was accepted"),
    }
}

#[test]
fn a_volume_too_small_for_the_metadata_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images) = fixture(&tmp.path().join("cache"));
    let e = write_volume_set(
        &cache,
        &images,
        &[],
        &tmp.path().join("x"),
        &options(Compression::Zstd { level: 3 }, 1),
        &VolumeOptions {
            volume_size: 4096,
            parity: 0,
        },
        &|_| {},
    );
    assert!(matches!(e, Err(VolumeError::TooSmall { .. })));
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "nothing written"
    );
}

#[test]
fn the_same_inputs_give_the_same_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images) = fixture(&tmp.path().join("cache"));
    let c = Compression::Zstd { level: 3 };
    let write = |dir: &Path, threads: usize, order: bool| {
        std::fs::create_dir_all(dir).unwrap();
        let mut imgs = images.clone();
        if order {
            imgs.reverse();
        }
        write_volume_set(
            &cache,
            &imgs,
            &[],
            &dir.join("pkg"),
            &options(c, threads),
            &VolumeOptions {
                volume_size: 400 * 1024,
                parity: 2,
            },
            &|_| {},
        )
        .unwrap()
    };
    let a = write(&tmp.path().join("a"), 1, false);
    let b = write(&tmp.path().join("b"), 3, true);
    assert_eq!(a.set_id, b.set_id);
    assert_eq!(a.files.len(), b.files.len());
    for (x, y) in a.files.iter().zip(&b.files) {
        assert_eq!(
            std::fs::read(&x.path).unwrap(),
            std::fs::read(&y.path).unwrap(),
            "{}",
            x.path.display()
        );
    }
}

#[test]
fn xz_and_plain_sets_rebuild_a_flipped_byte_before_using_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images) = fixture(&tmp.path().join("cache"));
    for c in [Compression::Xz { preset: 1 }, Compression::None] {
        let single = tmp.path().join(format!("single.{}", c.suffix()));
        write_package(&cache, &images, &[], &single, &options(c, 2), &|_| {}).unwrap();
        let dir = tmp.path().join(c.suffix());
        let sum = split(&dir, &cache, &images, c, 400 * 1024, 1);
        let victim = &sum.files[1].path;
        let mut bytes = std::fs::read(victim).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x10;
        std::fs::write(victim, &bytes).unwrap();
        let (out, set) = logical(std::slice::from_ref(&dir));
        assert!(out == decoded(&single), "{c:?}");
        assert_eq!(
            set.rebuilt.iter().map(|r| r.index).collect::<Vec<_>>(),
            vec![2]
        );
    }
}
