//! Packs every image named in a store (as ferry-pack does from its cache)
//! into one package, or into a volume set with `--volume-size SIZE
//! [--parity N]`: the library half of `ferry-pack --volume-size`, used by
//! `scripts/bench-volumes.sh` to time both in the same run.
//!
//!   pack_store --cache DIR --out PATH [--volume-size SIZE] [--parity N] [--threads N]
//!
//! With a volume size, PATH is the stem: `PATH.vol001-of-00N.tar.zst`, ….

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferry_package::pack::{write_package, Compression, PackImage, WriteOptions};
use ferry_package::volume::{parse_size, write_volume_set, VolumeOptions};
use ferry_store::layout::image_name;
use ferry_store::Store;

/// Reads to the end in 1 MiB reads (as the tar reader's consumers do for blobs).
fn drain(r: &mut dyn std::io::Read) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    // `--read PATH…`: time one read of packages or sets (decoded bytes to nowhere).
    if std::env::args().nth(1).as_deref() == Some("--read") {
        for p in std::env::args().skip(2).map(PathBuf::from) {
            let started = std::time::Instant::now();
            let n = if ferry_package::volume::set::is_volume_source(&p) {
                let mut set =
                    ferry_package::volume::VolumeSet::open(std::slice::from_ref(&p), None)?;
                drain(&mut set.reader())?
            } else {
                let f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&p)?);
                drain(&mut zstd::stream::read::Decoder::with_buffer(f)?)?
            };
            println!(
                "{}: {n} bytes in {:.2}s",
                p.display(),
                started.elapsed().as_secs_f64()
            );
        }
        return Ok(());
    }
    let (mut cache, mut out, mut size, mut parity, mut threads) = (None, None, None, 0u32, 2usize);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--cache" => cache = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--volume-size" => size = Some(parse_size(&value()?)?),
            "--parity" => parity = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let (cache, out) = (cache.ok_or("--cache DIR")?, out.ok_or("--out PATH")?);
    let store = Store::open_read_only(&cache)?;
    let images: Vec<PackImage> = store
        .index_entries()?
        .into_iter()
        .filter_map(|d| {
            let name = image_name(&d)?.to_owned();
            Some(PackImage {
                requested: name.clone(),
                source_digest: d.digest.clone(),
                root: d,
                name,
                platforms: Vec::new(),
            })
        })
        .collect();
    let options = WriteOptions {
        compression: Compression::Zstd { level: 3 },
        threads,
        tool: "pack_store example".into(),
        options: BTreeMap::new(),
        checksum: false,
    };
    match size {
        None => {
            let s = write_package(&store, &images, &[], &out, &options, &|_| {})?;
            println!("{} {} bytes", s.path.display(), s.bytes);
        }
        Some(volume_size) => {
            let s = write_volume_set(
                &store,
                &images,
                &[],
                &out,
                &options,
                &VolumeOptions {
                    volume_size,
                    parity,
                },
                &|_| {},
            )?;
            for f in &s.files {
                println!("{} {} bytes", f.path.display(), f.bytes);
            }
        }
    }
    Ok(())
}
