//! Layer blobs: real tar archives of realistic files, gzip- or zstd-compressed,
//! streamed to a temp file in the layout while both the blob digest and the
//! diff_id (sha256 of the uncompressed tar) are computed. Memory stays bounded
//! whatever the layer size.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::Context as _;
use ferry_store::Digest;
use flate2::write::GzEncoder;
use flate2::Compression;
use rand::Rng;

use crate::rng::{rng_for, RandomBytes, TextBytes, WORDS};
use crate::tario::{dir_header, file_header, HashWriter};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LayerCompression {
    Gzip,
    Zstd,
}

/// What to generate for one layer.
pub(crate) struct LayerParams<'a> {
    pub(crate) seed: u64,
    /// Distinguishes this layer's content from every other layer's.
    pub(crate) label: &'a str,
    /// Approximate compressed size in bytes; files are added until it is reached.
    pub(crate) target_size: u64,
    pub(crate) incompressible: bool,
    pub(crate) compression: LayerCompression,
}

/// A layer blob written into `blobs/sha256/`.
#[derive(Debug, Clone)]
pub(crate) struct LayerBlob {
    pub(crate) digest: Digest,
    pub(crate) size: u64,
    pub(crate) diff_id: Digest,
}

enum Compressor<W: Write> {
    Gzip(GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn inner(&self) -> &W {
        match self {
            Compressor::Gzip(e) => e.get_ref(),
            Compressor::Zstd(e) => e.get_ref(),
        }
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

const DIRS: &[&str] = &[
    "etc/",
    "usr/",
    "usr/bin/",
    "usr/lib/",
    "usr/share/",
    "usr/share/doc/",
];

/// Generates one layer into `layout/blobs/sha256/<hex>` (via a temp file in `layout`).
/// If an identical blob already exists the temp file is discarded.
pub(crate) fn write_layer(layout: &Path, p: &LayerParams<'_>) -> anyhow::Result<LayerBlob> {
    let tmp = layout.join(format!(".tmp-layer-{}", p.label));
    let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let blob_writer = HashWriter::new(BufWriter::with_capacity(1 << 20, file));
    let compressor = match (p.compression, p.incompressible) {
        // Stored deflate blocks: random data would not shrink anyway, and this is fast.
        (LayerCompression::Gzip, true) => {
            Compressor::Gzip(GzEncoder::new(blob_writer, Compression::none()))
        }
        (LayerCompression::Gzip, false) => {
            Compressor::Gzip(GzEncoder::new(blob_writer, Compression::fast()))
        }
        (LayerCompression::Zstd, incompressible) => {
            let level = if incompressible { 1 } else { 3 };
            Compressor::Zstd(zstd::stream::write::Encoder::new(blob_writer, level)?)
        }
    };
    let mut tar = tar::Builder::new(HashWriter::new(compressor));
    for d in DIRS {
        tar.append_data(&mut dir_header(), d, io::empty())?;
    }
    let mut rng = rng_for(p.seed, &format!("layer-files/{}", p.label));
    let max_file = (p.target_size / 4).clamp(4096, 64 << 20);
    let uncompressed_cap = p.target_size.saturating_mul(64).saturating_add(1 << 20);
    let mut n = 0u64;
    loop {
        let compressed = tar.get_ref().inner.inner().count;
        let uncompressed = tar.get_ref().count;
        if (compressed >= p.target_size && n > 0) || uncompressed >= uncompressed_cap {
            break;
        }
        let word = WORDS[rng.gen_range(0..WORDS.len())];
        let (path, mode) = match rng.gen_range(0..4u8) {
            0 => (format!("usr/bin/{word}-{n}"), 0o755),
            1 => (format!("etc/{word}-{n}.conf"), 0o644),
            2 => (
                format!("usr/lib/lib{word}-{n}.so.{}", rng.gen_range(0..4u8)),
                0o755,
            ),
            _ => (format!("usr/share/doc/{word}-{n}.md"), 0o644),
        };
        // Never overshoot the target by more than one small file (compressed <= uncompressed
        // for text, ~= for random data).
        let size = rng
            .gen_range(256..=max_file)
            .min((p.target_size - compressed.min(p.target_size)).max(256));
        let content_rng = rng_for(p.seed, &format!("layer-content/{}/{n}", p.label));
        let mut header = file_header(size, mode);
        if p.incompressible {
            tar.append_data(&mut header, &path, RandomBytes::new(content_rng, size))?;
        } else {
            tar.append_data(&mut header, &path, TextBytes::new(content_rng, size))?;
        }
        n += 1;
    }
    let (compressor, diff_id, _) = tar.into_inner()?.finish();
    let (mut buf, digest, size) = compressor.finish()?.finish();
    buf.flush()?;
    drop(buf);
    let dest = layout.join("blobs").join("sha256").join(digest.hex());
    if dest.exists() {
        fs::remove_file(&tmp)?;
    } else {
        fs::rename(&tmp, &dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
    }
    Ok(LayerBlob {
        digest,
        size,
        diff_id,
    })
}
