//! A corpus of small hostile packages. Each starts from a tiny valid generated
//! layout and breaks exactly one thing; a correct importer must reject every one
//! with an error that names the offending entry, digest or package file
//! ([`HostileCase::must_mention`]) and must never write outside its destination.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ferry_store::descriptor::children_of;
use ferry_store::{media, Algorithm, Descriptor, Digest, Hasher};
use tar::EntryType;

use crate::image::{generate_layout, FixtureSpec};
use crate::layout::{blob_path, classify, read_index};
use crate::tario::raw_header;

/// One hostile package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostileCase {
    /// Short kebab-case name (also the file stem).
    pub name: String,
    /// The package file.
    pub path: PathBuf,
    /// A substring a good error message must contain: the offending entry name,
    /// the offending digest's hex, or (for stream-level corruption) the package file name.
    pub must_mention: String,
    /// What is broken, for test failure messages.
    pub description: String,
}

/// Name of the directory (inside the corpus dir) holding the valid base layout.
pub const BASE_LAYOUT_DIR: &str = "base-layout";
/// Name of the valid plain-tar package of the base layout (a control, not a case).
pub const VALID_PACKAGE: &str = "valid.tar";

/// One tar entry with complete control over its header.
#[derive(Debug, Clone)]
struct RawEntry {
    name: Vec<u8>,
    kind: EntryType,
    data: Vec<u8>,
    link: Option<Vec<u8>>,
}

impl RawEntry {
    fn file(name: impl Into<Vec<u8>>, data: Vec<u8>) -> RawEntry {
        RawEntry {
            name: name.into(),
            kind: EntryType::Regular,
            data,
            link: None,
        }
    }
    fn special(name: impl Into<Vec<u8>>, kind: EntryType, link: Option<&str>) -> RawEntry {
        RawEntry {
            name: name.into(),
            kind,
            data: Vec::new(),
            link: link.map(|l| l.as_bytes().to_vec()),
        }
    }
}

/// Serialises entries to tar bytes; also returns each entry's header offset.
fn tar_bytes(entries: &[RawEntry]) -> anyhow::Result<(Vec<u8>, Vec<u64>)> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut offsets = Vec::new();
    for e in entries {
        offsets.push(builder.get_ref().len() as u64);
        if e.name.len() > 100 && e.kind != EntryType::GNULongName {
            // As GNU tar does: the full name in a long-name entry before the header.
            let mut name = e.name.clone();
            name.push(0);
            let h = raw_header(
                b"././@LongLink",
                EntryType::GNULongName,
                name.len() as u64,
                None,
            );
            builder.append(&h, name.as_slice())?;
        }
        let mut h = raw_header(&e.name, e.kind, e.data.len() as u64, e.link.as_deref());
        match e.kind {
            EntryType::Directory => h.set_mode(0o755),
            EntryType::Char => {
                h.set_device_major(5)?;
                h.set_device_minor(1)?;
            }
            _ => {}
        }
        h.set_cksum();
        builder.append(&h, e.data.as_slice())?;
    }
    Ok((builder.into_inner()?, offsets))
}

/// The valid base, loaded in memory (it is a few KiB).
struct Base {
    entries: Vec<RawEntry>,
    manifest: Descriptor,
    layers: Vec<Descriptor>,
    config: Descriptor,
}

impl Base {
    fn load(dir: &Path) -> anyhow::Result<Base> {
        let classified = classify(dir)?;
        let mut entries = vec![
            RawEntry::file("oci-layout", fs::read(dir.join("oci-layout"))?),
            RawEntry::file("index.json", fs::read(dir.join("index.json"))?),
            RawEntry::special("blobs/", EntryType::Directory, None),
            RawEntry::special("blobs/sha256/", EntryType::Directory, None),
        ];
        for d in classified.metadata.iter().chain(&classified.layers) {
            entries.push(RawEntry::file(
                format!("blobs/sha256/{}", d.hex()),
                fs::read(blob_path(dir, d))?,
            ));
        }
        let manifest = read_index(dir)?
            .into_iter()
            .next()
            .context("base has no image")?;
        let children =
            children_of(&manifest, &fs::read(blob_path(dir, &manifest.digest))?)?.descriptors;
        let (config, layers) = children
            .split_first()
            .context("base manifest has no config")?;
        Ok(Base {
            entries,
            manifest: manifest.clone(),
            layers: layers.to_vec(),
            config: config.clone(),
        })
    }

    fn blob_entry_name(d: &Digest) -> Vec<u8> {
        format!("blobs/sha256/{}", d.hex()).into_bytes()
    }

    fn position(&self, d: &Digest) -> usize {
        let name = Base::blob_entry_name(d);
        self.entries
            .iter()
            .position(|e| e.name == name)
            .unwrap_or(self.entries.len())
    }

    /// Entries with `f` applied to a clone.
    fn with(&self, f: impl FnOnce(&mut Vec<RawEntry>)) -> Vec<RawEntry> {
        let mut e = self.entries.clone();
        f(&mut e);
        e
    }

    fn layer(&self) -> &Descriptor {
        &self.layers[0]
    }

    /// Entries where the manifest is replaced by `manifest_bytes` (and index.json points to it).
    fn with_manifest(&self, manifest_bytes: Vec<u8>) -> anyhow::Result<(Vec<RawEntry>, Digest)> {
        let digest = Digest::sha256_of(&manifest_bytes);
        let mut top = self.manifest.clone();
        top.digest = digest.clone();
        top.size = manifest_bytes.len() as u64;
        let index = serde_json::json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [top] });
        let index = serde_json::to_vec(&index)?;
        let pos = self.position(&self.manifest.digest);
        let entries = self.with(|e| {
            e[1].data = index;
            e[pos] = RawEntry::file(Base::blob_entry_name(&digest), manifest_bytes);
        });
        Ok((entries, digest))
    }
}

/// Creates `dir` and the valid base layout in it, and loads the base.
fn prepare_base(dir: &Path) -> anyhow::Result<Base> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let base_dir = dir.join(BASE_LAYOUT_DIR);
    if base_dir.exists() {
        fs::remove_dir_all(&base_dir)?;
    }
    let spec = FixtureSpec {
        seed: 0x0405_711e,
        images: 1,
        layers_per_image: 2,
        layer_size: 2048,
        ..FixtureSpec::default()
    };
    generate_layout(&spec, &base_dir)?;
    Base::load(&base_dir)
}

/// Writes the corpus into `dir` (created if needed): the valid base layout in
/// [`BASE_LAYOUT_DIR`], a valid control package [`VALID_PACKAGE`], and one file
/// per hostile case, which are returned.
pub fn write_hostile_corpus(dir: &Path) -> anyhow::Result<Vec<HostileCase>> {
    let base = prepare_base(dir)?;
    let (valid, offsets) = tar_bytes(&base.entries)?;
    fs::write(dir.join(VALID_PACKAGE), &valid)?;

    let layer = base.layer().clone();
    let layer_hex = layer.digest.hex().to_owned();
    let layer_pos = base.position(&layer.digest);
    let mut cases = Vec::new();
    let mut add =
        |name: &str, ext: &str, must: &str, what: &str, bytes: Vec<u8>| -> anyhow::Result<()> {
            let path = dir.join(format!("{name}{ext}"));
            fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            cases.push(HostileCase {
                name: name.to_owned(),
                path,
                must_mention: must.to_owned(),
                description: what.to_owned(),
            });
            Ok(())
        };
    let tar = |entries: Vec<RawEntry>| -> anyhow::Result<Vec<u8>> { Ok(tar_bytes(&entries)?.0) };

    for (name, evil) in [
        ("path-traversal", "../evil"),
        ("path-traversal-nested", "blobs/../../evil"),
        ("absolute-path", "/tmp/evil"),
    ] {
        let entries = base.with(|e| e.insert(4, RawEntry::file(evil, b"pwned\n".to_vec())));
        add(
            name,
            ".tar",
            evil,
            &format!("extra entry named {evil}"),
            tar(entries)?,
        )?;
    }
    let specials = [
        (
            "symlink-blob",
            EntryType::Symlink,
            Some("/etc/passwd"),
            "layer blob entry is a symlink to /etc/passwd",
        ),
        (
            "hardlink-outside",
            EntryType::Link,
            Some("../../etc/passwd"),
            "layer blob entry is a hard link to ../../etc/passwd",
        ),
        (
            "char-device",
            EntryType::Char,
            None,
            "layer blob entry is a character device (5,1)",
        ),
        ("fifo", EntryType::Fifo, None, "layer blob entry is a FIFO"),
    ];
    for (name, kind, link, what) in specials {
        let entries = base.with(|e| {
            e[layer_pos] = RawEntry::special(Base::blob_entry_name(&layer.digest), kind, link)
        });
        add(name, ".tar", &layer_hex, what, tar(entries)?)?;
    }
    let not_hex = format!("NOTHEX{}", "0".repeat(58));
    let entries = base.with(|e| {
        e.push(RawEntry::file(
            format!("blobs/sha256/{not_hex}"),
            b"junk".to_vec(),
        ))
    });
    add(
        "blob-name-not-hex",
        ".tar",
        &not_hex,
        "extra blob whose name is not hex",
        tar(entries)?,
    )?;
    let upper = base.config.digest.hex().to_uppercase();
    let config_bytes = base.entries[base.position(&base.config.digest)]
        .data
        .clone();
    let entries = base.with(|e| {
        e.push(RawEntry::file(
            format!("blobs/sha256/{upper}"),
            config_bytes,
        ))
    });
    add(
        "blob-name-uppercase",
        ".tar",
        &upper,
        "extra blob named by uppercase hex",
        tar(entries)?,
    )?;

    let entries = base.with(|e| {
        let data = &mut e[layer_pos].data;
        let mid = data.len() / 2;
        data[mid] ^= 0xff;
    });
    add(
        "digest-mismatch",
        ".tar",
        &layer_hex,
        "layer content does not match its name",
        tar(entries)?,
    )?;

    let mut manifest: serde_json::Value =
        serde_json::from_slice(&base.entries[base.position(&base.manifest.digest)].data)?;
    manifest["layers"][0]["size"] = serde_json::json!(layer.size + 1);
    let (entries, _) = base.with_manifest(serde_json::to_vec(&manifest)?)?;
    add(
        "size-mismatch",
        ".tar",
        &layer_hex,
        "manifest gives the layer size + 1",
        tar(entries)?,
    )?;

    let bad = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"#,
        media::OCI_MANIFEST
    )
    .into_bytes();
    let (entries, bad_digest) = base.with_manifest(bad)?;
    add(
        "malformed-manifest",
        ".tar",
        bad_digest.hex(),
        "manifest blob (correctly named) is not JSON",
        tar(entries)?,
    )?;

    let entries = base.with(|e| e[1].data = br#"{"schemaVersion":2,"manifests":[{"#.to_vec());
    add(
        "malformed-index",
        ".tar",
        "index.json",
        "index.json is not JSON",
        tar(entries)?,
    )?;

    let manifest_pos = base.position(&base.manifest.digest);
    let entries = base.with(|e| {
        e.remove(manifest_pos);
    });
    add(
        "missing-manifest",
        ".tar",
        base.manifest.digest.hex(),
        "index.json names a manifest that is absent",
        tar(entries)?,
    )?;
    let entries = base.with(|e| {
        e.remove(layer_pos);
    });
    add(
        "missing-layer",
        ".tar",
        &layer_hex,
        "manifest names a layer that is absent",
        tar(entries)?,
    )?;

    // Cut inside the biggest blob's data.
    let (biggest, _) = base
        .entries
        .iter()
        .enumerate()
        .max_by_key(|(_, e)| e.data.len())
        .context("empty base")?;
    let cut = offsets[biggest] + 512 + base.entries[biggest].data.len() as u64 / 2;
    let biggest_name = String::from_utf8_lossy(&base.entries[biggest].name).into_owned();
    let biggest_hex = biggest_name.trim_start_matches("blobs/sha256/").to_owned();
    add(
        "truncated",
        ".tar",
        &biggest_hex,
        &format!("plain tar cut inside {biggest_name}"),
        valid[..cut as usize].to_vec(),
    )?;

    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&valid)?;
    let xz = xz.finish()?;
    add(
        "truncated",
        ".tar.xz",
        "truncated.tar.xz",
        "xz stream cut in the middle",
        xz[..xz.len() / 2].to_vec(),
    )?;

    let mut zst = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
    zst.include_checksum(true)?;
    zst.write_all(&valid)?;
    let mut zst = zst.finish()?;
    corrupt_zstd_block(&mut zst)?;
    add(
        "corrupt",
        ".tar.zst",
        "corrupt.tar.zst",
        "zstd block in the middle has a reserved block type",
        zst,
    )?;
    for p in more_hostile_cases(&base, &valid)? {
        add(&p.name, p.ext, &p.must, &p.what, p.bytes)?;
    }
    Ok(cases)
}

/// A hostile case before it is written.
struct Pending {
    name: String,
    ext: &'static str,
    must: String,
    what: String,
    bytes: Vec<u8>,
}

fn pending(name: &str, ext: &'static str, must: &str, what: &str, bytes: Vec<u8>) -> Pending {
    Pending {
        name: name.to_owned(),
        ext,
        must: must.to_owned(),
        what: what.to_owned(),
        bytes,
    }
}

/// Depth of the nested-index case.
pub const NESTED_INDEX_DEPTH: usize = 10_000;
/// Size a bomb's tar header declares for a blob: 1 PiB, more than any disk here.
pub const BOMB_DECLARED_SIZE: u64 = 1 << 50;

fn sha512_of(bytes: &[u8]) -> Digest {
    let mut h = Hasher::new(Algorithm::Sha512);
    h.update(bytes);
    h.finish()
}

/// `blobs/<algorithm>/<hex>`.
fn blob_name(d: &Digest) -> Vec<u8> {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex()).into_bytes()
}

/// A pax extended-header record `LEN key=value\n` (LEN counts itself).
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=' and '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn index_json_for(top: &Descriptor) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [top],
    }))?)
}

/// Tar bytes of `entries` without the end-of-archive blocks, then a header for
/// `name` declaring `declared` bytes, then `zeros` zero bytes (a stream that
/// ends inside the entry), all through `out`.
fn write_bomb(
    entries: &[RawEntry],
    name: &[u8],
    kind: EntryType,
    declared: u64,
    zeros: u64,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let (prefix, _) = tar_bytes(entries)?;
    out.write_all(&prefix[..prefix.len() - 1024])?;
    out.write_all(raw_header(name, kind, declared, None).as_bytes())?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// A zstd frame whose header declares `declared` content bytes, holding `data`
/// in raw blocks (the declared size is a lie).
fn zstd_frame_declaring(data: &[u8], declared: u64) -> Vec<u8> {
    // Frame header: magic, FHD (8-byte content size, not single-segment),
    // window descriptor (2 MiB), content size.
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x58];
    f.extend_from_slice(&declared.to_le_bytes());
    let blocks: Vec<&[u8]> = data.chunks(64 << 10).collect();
    for (i, block) in blocks.iter().enumerate() {
        let last = u32::from(i + 1 == blocks.len());
        let header = last | (block.len() as u32) << 3; // block type 0: raw
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(block);
    }
    f
}

impl Base {
    fn manifest_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(serde_json::from_slice(
            &self.entries[self.position(&self.manifest.digest)].data,
        )?)
    }
}

/// The cases added after the first seventeen: duplicates, nesting, sizes,
/// names, decompression bombs, trailing garbage, sha512.
fn more_hostile_cases(base: &Base, valid: &[u8]) -> anyhow::Result<Vec<Pending>> {
    let mut out = Vec::new();
    let tar = |entries: Vec<RawEntry>| -> anyhow::Result<Vec<u8>> { Ok(tar_bytes(&entries)?.0) };
    let layer = base.layer().clone();
    let layer_hex = layer.digest.hex().to_owned();
    let layer_pos = base.position(&layer.digest);

    // Duplicates: the same blob path twice (second copy altered), index.json twice.
    let entries = base.with(|e| {
        let mut twin = e[layer_pos].clone();
        let mid = twin.data.len() / 2;
        twin.data[mid] ^= 0xff;
        e.insert(layer_pos + 1, twin);
    });
    out.push(pending(
        "duplicate-blob",
        ".tar",
        &layer_hex,
        "the layer blob path appears twice, with different contents",
        tar(entries)?,
    ));
    let entries = base.with(|e| {
        e.push(RawEntry::file(
            "index.json",
            br#"{"schemaVersion":2,"manifests":[]}"#.to_vec(),
        ))
    });
    out.push(pending(
        "duplicate-index",
        ".tar",
        "index.json",
        "index.json appears twice, with different contents",
        tar(entries)?,
    ));

    // An index nested NESTED_INDEX_DEPTH deep, every level correctly named.
    let mut child = Descriptor::new(
        base.manifest.media_type.clone(),
        base.manifest.digest.clone(),
        base.manifest.size,
    );
    let mut chain = Vec::with_capacity(NESTED_INDEX_DEPTH);
    let mut digests = Vec::with_capacity(NESTED_INDEX_DEPTH);
    for _ in 0..NESTED_INDEX_DEPTH {
        let bytes = index_json_for(&child)?;
        let d = Digest::sha256_of(&bytes);
        child = Descriptor::new(media::OCI_INDEX, d.clone(), bytes.len() as u64);
        chain.push(RawEntry::file(blob_name(&d), bytes));
        digests.push(d);
    }
    let mut top = base.manifest.clone();
    top.media_type = media::OCI_INDEX.to_owned();
    top.digest = child.digest.clone();
    top.size = child.size;
    let index = index_json_for(&top)?;
    // The walk refuses the first index at depth MAX_DEPTH (the top is depth 0).
    let too_deep = digests[NESTED_INDEX_DEPTH - 1 - ferry_store::walk::MAX_DEPTH].clone();
    let entries = base.with(|e| {
        e[1].data = index;
        e.extend(chain.into_iter().rev());
    });
    out.push(pending(
        "nested-index-10000",
        ".tar",
        too_deep.hex(),
        "an index whose child is an index … 10,000 levels deep, all correctly named",
        tar(entries)?,
    ));

    // A manifest over 4 MiB: valid JSON padded with a big annotation.
    let mut manifest = base.manifest_json()?;
    manifest["annotations"] =
        serde_json::json!({ "org.example.padding": "x".repeat((4 << 20) + 4096) });
    let (entries, big) = base.with_manifest(serde_json::to_vec(&manifest)?)?;
    out.push(pending(
        "manifest-over-4mib",
        ".tar",
        big.hex(),
        "the manifest (correctly named) is over 4 MiB",
        tar(entries)?,
    ));

    // Entry names: not UTF-8, and over 1024 bytes through GNU long-name and pax headers.
    let bad_name = b"blobs/sha256/bad-\xff\xfe-name".to_vec();
    let shown = String::from_utf8_lossy(&bad_name).into_owned();
    let entries = base.with(|e| e.insert(4, RawEntry::file(bad_name, b"junk".to_vec())));
    out.push(pending(
        "name-not-utf8",
        ".tar",
        &shown,
        "an entry name with bytes 0xff 0xfe",
        tar(entries)?,
    ));
    let long_gnu = format!("blobs/sha256/{}", "ab".repeat(600));
    let mut data = long_gnu.clone().into_bytes();
    data.push(0);
    let entries = base.with(|e| {
        e.insert(
            4,
            RawEntry {
                name: b"././@LongLink".to_vec(),
                kind: EntryType::GNULongName,
                data,
                link: None,
            },
        );
        e.insert(
            5,
            RawEntry::file(&long_gnu.as_bytes()[..100], b"junk".to_vec()),
        );
    });
    out.push(pending(
        "name-too-long-gnu",
        ".tar",
        &long_gnu,
        "a 1213-byte entry name in a GNU long-name header",
        tar(entries)?,
    ));
    let long_pax = format!("blobs/sha256/{}", "cd".repeat(600));
    let entries = base.with(|e| {
        e.insert(
            4,
            RawEntry {
                name: b"PaxHeaders.0/long".to_vec(),
                kind: EntryType::XHeader,
                data: pax_record("path", long_pax.as_bytes()),
                link: None,
            },
        );
        e.insert(5, RawEntry::file("long", b"junk".to_vec()));
    });
    out.push(pending(
        "name-too-long-pax",
        ".tar",
        &long_pax,
        "a 1213-byte entry name in a pax extended header",
        tar(entries)?,
    ));

    // Decompression bombs: tiny files, absurd declared or expanded sizes.
    let head = &base.entries[..2]; // oci-layout, index.json
    let mut zst = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
    write_bomb(
        head,
        &Base::blob_entry_name(&layer.digest),
        EntryType::Regular,
        BOMB_DECLARED_SIZE,
        128 << 20,
        &mut zst,
    )?;
    out.push(pending(
        "bomb-blob",
        ".tar.zst",
        &layer_hex,
        "streamed zstd (no content size): the layer's header declares 1 PiB, followed by 128 MiB of zeros",
        zst.finish()?,
    ));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    write_bomb(
        head,
        &Base::blob_entry_name(&layer.digest),
        EntryType::Regular,
        BOMB_DECLARED_SIZE,
        32 << 20,
        &mut gz,
    )?;
    out.push(pending(
        "bomb-blob",
        ".tar.gz",
        &layer_hex,
        "gzip: the layer's header declares 1 PiB, followed by 32 MiB of zeros (~1000x)",
        gz.finish()?,
    ));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    write_bomb(
        &base.entries[..1],
        b"index.json",
        EntryType::Regular,
        1 << 40,
        32 << 20,
        &mut gz,
    )?;
    out.push(pending(
        "bomb-index",
        ".tar.gz",
        "index.json",
        "gzip: index.json's header declares 1 TiB, followed by 32 MiB of zeros",
        gz.finish()?,
    ));
    let mut zst = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
    write_bomb(
        head,
        b"././@LongLink",
        EntryType::GNULongName,
        1 << 40,
        256 << 20,
        &mut zst,
    )?;
    out.push(pending(
        "bomb-long-name",
        ".tar.zst",
        "././@LongLink",
        "a GNU long-name entry declaring 1 TiB, followed by 256 MiB of zeros (the tar parser would buffer them all in memory)",
        zst.finish()?,
    ));
    out.push(pending(
        "bomb-frame-size",
        ".tar.zst",
        "not enough space",
        "a zstd frame header declaring 1 PiB of content around a tiny valid tar",
        zstd_frame_declaring(valid, BOMB_DECLARED_SIZE),
    ));

    // Valid streams followed by garbage.
    let garbage = b"TRAILING GARBAGE, NOT A STREAM\n";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(valid)?;
    let mut bytes = gz.finish()?;
    bytes.extend_from_slice(garbage);
    out.push(pending(
        "trailing-garbage",
        ".tar.gz",
        "trailing-garbage.tar.gz",
        "a valid gzip stream followed by garbage",
        bytes,
    ));
    let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(valid)?;
    let mut bytes = xz.finish()?;
    bytes.extend_from_slice(garbage);
    out.push(pending(
        "trailing-garbage",
        ".tar.xz",
        "trailing-garbage.tar.xz",
        "a valid xz stream followed by garbage",
        bytes,
    ));
    let mut bytes = zstd::encode_all(valid, 3)?;
    bytes.extend_from_slice(garbage);
    out.push(pending(
        "trailing-garbage",
        ".tar.zst",
        "trailing-garbage.tar.zst",
        "a valid zstd frame followed by garbage",
        bytes,
    ));

    // A sha512 config digest that does not match the config's bytes.
    let config_pos = base.position(&base.config.digest);
    let config_bytes = base.entries[config_pos].data.clone();
    let mut other = config_bytes.clone();
    other.push(b'\n');
    let wrong = sha512_of(&other);
    let mut manifest = base.manifest_json()?;
    manifest["config"]["digest"] = serde_json::json!(wrong.to_string());
    let (mut entries, _) = base.with_manifest(serde_json::to_vec(&manifest)?)?;
    entries[config_pos] = RawEntry::file(blob_name(&wrong), config_bytes);
    out.push(pending(
        "sha512-config-mismatch",
        ".tar",
        wrong.hex(),
        "the config is named and referenced by a sha512 digest its bytes do not have",
        tar(entries)?,
    ));
    Ok(out)
}

/// A package that is odd but legitimate: a correct importer accepts it and
/// stores [`OddCase::blob`] byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OddCase {
    /// Short kebab-case name (also the file stem).
    pub name: String,
    /// The package file.
    pub path: PathBuf,
    /// The odd blob, which must be in the store afterwards.
    pub blob: Digest,
    /// Its exact bytes.
    pub blob_bytes: Vec<u8>,
    /// What is odd, for test failure messages.
    pub description: String,
}

/// Media type of the unknown layer of the `odd-unknown-media-type` case.
pub const UNKNOWN_LAYER_TYPE: &str = "application/vnd.example.thing.v1+tar";

/// Writes the odd-but-legitimate packages into `dir` (beside the same base
/// layout as [`write_hostile_corpus`]) and returns them.
pub fn write_odd_corpus(dir: &Path) -> anyhow::Result<Vec<OddCase>> {
    let base = prepare_base(dir)?;
    let tar = |entries: Vec<RawEntry>| -> anyhow::Result<Vec<u8>> { Ok(tar_bytes(&entries)?.0) };
    let layer = base.layer().clone();
    let layer_pos = base.position(&layer.digest);
    let layer_bytes = base.entries[layer_pos].data.clone();
    let mut cases = Vec::new();
    let mut add = |name: &str, what: &str, blob: &Digest, blob_bytes: &[u8], bytes: Vec<u8>| {
        let path = dir.join(format!("odd-{name}.tar"));
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        cases.push(OddCase {
            name: name.to_owned(),
            path,
            blob: blob.clone(),
            blob_bytes: blob_bytes.to_vec(),
            description: what.to_owned(),
        });
        anyhow::Ok(())
    };

    let d512 = sha512_of(&layer_bytes);
    let mut manifest = base.manifest_json()?;
    manifest["layers"][0]["digest"] = serde_json::json!(d512.to_string());
    let (mut entries, _) = base.with_manifest(serde_json::to_vec(&manifest)?)?;
    entries[layer_pos] = RawEntry::file(blob_name(&d512), layer_bytes.clone());
    entries.insert(
        4,
        RawEntry::special("blobs/sha512/", EntryType::Directory, None),
    );
    add(
        "sha512-layer",
        "a layer named and referenced by its sha512 digest",
        &d512,
        &layer_bytes,
        tar(entries)?,
    )?;

    let thing = b"an opaque example payload: neither a tar nor compressed\n".to_vec();
    let thing_digest = Digest::sha256_of(&thing);
    let mut manifest = base.manifest_json()?;
    push_layer(
        &mut manifest,
        UNKNOWN_LAYER_TYPE,
        &thing_digest,
        thing.len(),
    )?;
    let (mut entries, _) = base.with_manifest(serde_json::to_vec(&manifest)?)?;
    entries.push(RawEntry::file(blob_name(&thing_digest), thing.clone()));
    add(
        "unknown-media-type",
        "an extra layer of an unknown media type",
        &thing_digest,
        &thing,
        tar(entries)?,
    )?;

    let empty = Digest::sha256_of(b"");
    let mut manifest = base.manifest_json()?;
    push_layer(&mut manifest, media::OCI_LAYER_TAR, &empty, 0)?;
    let (mut entries, _) = base.with_manifest(serde_json::to_vec(&manifest)?)?;
    entries.push(RawEntry::file(blob_name(&empty), Vec::new()));
    add(
        "empty-layer",
        "an extra zero-length layer",
        &empty,
        b"",
        tar(entries)?,
    )?;

    let entries = base.with(|e| {
        e.insert(
            0,
            RawEntry {
                name: b"pax_global_header".to_vec(),
                kind: EntryType::XGlobalHeader,
                data: pax_record("comment", b"0123456789abcdef (git archive)"),
                link: None,
            },
        )
    });
    add(
        "pax-global-header",
        "a pax global header first, as git archive writes",
        &layer.digest,
        &layer_bytes,
        tar(entries)?,
    )?;

    let entries = base.with(|e| {
        for entry in e.iter_mut() {
            entry.name.splice(0..0, *b"./");
        }
        e.insert(0, RawEntry::special("./", EntryType::Directory, None));
    });
    add(
        "dot-slash-names",
        "every entry name starts with ./, as tar -C DIR . writes",
        &layer.digest,
        &layer_bytes,
        tar(entries)?,
    )?;
    Ok(cases)
}

fn push_layer(
    manifest: &mut serde_json::Value,
    media_type: &str,
    digest: &Digest,
    size: usize,
) -> anyhow::Result<()> {
    manifest["layers"]
        .as_array_mut()
        .context("manifest has no layers array")?
        .push(serde_json::json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
        }));
    Ok(())
}

/// Marks the zstd block that covers the middle of the frame as block type 3
/// (reserved), which every decoder rejects before emitting that block's data.
fn corrupt_zstd_block(frame: &mut [u8]) -> anyhow::Result<()> {
    anyhow::ensure!(
        frame.len() > 6 && frame[..4] == [0x28, 0xb5, 0x2f, 0xfd],
        "not a zstd frame"
    );
    let fhd = frame[4];
    let single_segment = fhd & 0x20 != 0;
    let fcs_len = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
    let mut pos = 5 + usize::from(!single_segment) + dict_len + fcs_len;
    let middle = frame.len() / 2;
    let mut target = pos;
    loop {
        anyhow::ensure!(
            pos + 3 <= frame.len(),
            "zstd frame ends inside a block header"
        );
        let header = u32::from(frame[pos])
            | u32::from(frame[pos + 1]) << 8
            | u32::from(frame[pos + 2]) << 16;
        let last = header & 1 != 0;
        let kind = (header >> 1) & 3;
        let size = (header >> 3) as usize;
        if pos <= middle {
            target = pos;
        }
        pos += 3 + if kind == 1 { 1 } else { size };
        if last {
            break;
        }
    }
    frame[target] |= 0b110;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read as _;

    use super::*;

    #[test]
    fn corpus_is_complete_and_base_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let cases = write_hostile_corpus(dir.path()).unwrap();
        assert!(cases.len() >= 30, "{}", cases.len());
        let summary = crate::layout::verify_layout(&dir.path().join(BASE_LAYOUT_DIR)).unwrap();
        assert_eq!(summary.references.len(), 1);
        let mut names = std::collections::BTreeSet::new();
        for c in &cases {
            assert!(c.path.is_file(), "{}", c.path.display());
            assert!(!c.must_mention.is_empty());
            assert!(names.insert(c.path.clone()), "duplicate {}", c.name);
        }
        // The control package lists every blob of the base.
        let valid = fs::read(dir.path().join(VALID_PACKAGE)).unwrap();
        let mut archive = tar::Archive::new(valid.as_slice());
        let n = archive.entries().unwrap().count();
        assert_eq!(n, 4 + summary.blobs);
    }

    #[test]
    fn raw_headers_keep_hostile_names_with_valid_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let cases = write_hostile_corpus(dir.path()).unwrap();
        let find = |n: &str| cases.iter().find(|c| c.name == n).unwrap();
        for (case, expected) in [
            ("path-traversal", "../evil"),
            ("path-traversal-nested", "blobs/../../evil"),
            ("absolute-path", "/tmp/evil"),
        ] {
            let bytes = fs::read(&find(case).path).unwrap();
            let mut archive = tar::Archive::new(bytes.as_slice());
            let found = archive
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path_bytes().into_owned())
                .any(|p| p == expected.as_bytes());
            assert!(found, "{case}");
        }
        let bytes = fs::read(&find("hardlink-outside").path).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let link = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.header().entry_type() == EntryType::Link)
            .unwrap();
        assert_eq!(
            link.link_name_bytes().unwrap().as_ref(),
            b"../../etc/passwd"
        );
    }

    #[test]
    fn compressed_cases_fail_to_decode() {
        let dir = tempfile::tempdir().unwrap();
        let cases = write_hostile_corpus(dir.path()).unwrap();
        let path = |n: &str| {
            cases
                .iter()
                .find(|c| c.path.file_name().unwrap() == n)
                .unwrap()
                .path
                .clone()
        };
        let zst = fs::read(path("corrupt.tar.zst")).unwrap();
        assert!(zstd::decode_all(zst.as_slice()).is_err());
        let xz = fs::read(path("truncated.tar.xz")).unwrap();
        let mut out = Vec::new();
        assert!(liblzma::read::XzDecoder::new(xz.as_slice())
            .read_to_end(&mut out)
            .is_err());
        let truncated = fs::read(path("truncated.tar")).unwrap();
        let mut archive = tar::Archive::new(truncated.as_slice());
        let result: std::io::Result<Vec<u64>> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e?;
                std::io::copy(&mut e, &mut std::io::sink())
            })
            .collect();
        assert!(result.is_err());
    }
}
