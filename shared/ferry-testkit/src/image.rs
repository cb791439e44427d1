//! Image graphs: configs, manifests and indexes (OCI or Docker schema 2), written
//! into an OCI image layout together with their layers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use anyhow::{ensure, Context as _};
use ferry_store::descriptor::{ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use ferry_store::{media, Descriptor, Digest, Platform};
use serde_json::json;

use crate::layer::{write_layer, LayerBlob, LayerCompression, LayerParams};

/// What to generate. Same spec (including `seed`) → byte-identical output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureSpec {
    /// Seed of every random choice and every content byte.
    pub seed: u64,
    /// Number of named images.
    pub images: usize,
    /// Layers per image manifest (at least 1).
    pub layers_per_image: usize,
    /// Approximate compressed size of each layer blob in bytes (streamed: KB to GB).
    pub layer_size: u64,
    /// Layer files hold random bytes (incompressible, like already-compressed data)
    /// rather than compressible text.
    pub incompressible: bool,
    /// Every Nth image (the Nth, 2Nth, …) is a multi-arch index (amd64 + arm64); 0 = never.
    pub multi_arch_every: usize,
    /// Every Nth image uses Docker schema 2 media types; 0 = never. Others are OCI.
    pub docker_schema2_every: usize,
    /// Every Nth image uses tar+zstd layers (OCI images only; Docker images stay gzip); 0 = never.
    pub zstd_layers_every: usize,
    /// All images share one base layer blob (one per layer compression: gzip, zstd).
    pub shared_base_layer: bool,
    /// Repository prefix of every reference.
    pub name_prefix: String,
    /// Tag of every reference.
    pub tag: String,
}

impl Default for FixtureSpec {
    /// Small: 3 OCI images of 2 compressible 64 KiB layers sharing a base layer.
    fn default() -> FixtureSpec {
        FixtureSpec {
            seed: 0,
            images: 3,
            layers_per_image: 2,
            layer_size: 64 * 1024,
            incompressible: false,
            multi_arch_every: 0,
            docker_schema2_every: 0,
            zstd_layers_every: 0,
            shared_base_layer: true,
            name_prefix: "gcr.io/anthos-baremetal-release".to_owned(),
            tag: "1.8.0".to_owned(),
        }
    }
}

/// One named image of a fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedImage {
    /// Full reference, e.g. `gcr.io/anthos-baremetal-release/img-0:1.8.0`.
    pub reference: String,
    /// Top-level manifest or index, as listed in `index.json` (with its name annotations).
    pub descriptor: Descriptor,
    /// Every blob of the image's graph, top-level manifest/index first, without duplicates.
    pub blobs: Vec<Descriptor>,
}

/// Everything [`generate_layout`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    /// Images in `index.json` order.
    pub images: Vec<GeneratedImage>,
}

impl Fixture {
    /// Distinct blobs of the whole layout, sorted by digest.
    pub fn unique_blobs(&self) -> Vec<Descriptor> {
        let mut seen = BTreeMap::new();
        for d in self.images.iter().flat_map(|i| &i.blobs) {
            seen.entry(d.digest.clone()).or_insert_with(|| d.clone());
        }
        seen.into_values().collect()
    }

    /// Total size of the distinct blobs.
    pub fn total_blob_bytes(&self) -> u64 {
        self.unique_blobs().iter().map(|d| d.size).sum()
    }
}

/// True for the Nth, 2Nth, … item (0-based `index`); never when `every` is 0.
fn every(every: usize, index: usize) -> bool {
    every != 0 && (index + 1).is_multiple_of(every)
}

struct Flavour {
    docker: bool,
    compression: LayerCompression,
}

impl Flavour {
    fn manifest_type(&self) -> &'static str {
        if self.docker {
            media::DOCKER_MANIFEST
        } else {
            media::OCI_MANIFEST
        }
    }
    fn index_type(&self) -> &'static str {
        if self.docker {
            media::DOCKER_MANIFEST_LIST
        } else {
            media::OCI_INDEX
        }
    }
    fn config_type(&self) -> &'static str {
        if self.docker {
            media::DOCKER_CONFIG
        } else {
            media::OCI_CONFIG
        }
    }
    fn layer_type(&self) -> &'static str {
        match (self.docker, self.compression) {
            (true, _) => media::DOCKER_LAYER_GZIP,
            (false, LayerCompression::Gzip) => media::OCI_LAYER_GZIP,
            (false, LayerCompression::Zstd) => media::OCI_LAYER_ZSTD,
        }
    }
}

struct Generator<'a> {
    spec: &'a FixtureSpec,
    dir: &'a Path,
    bases: HashMap<LayerCompression, LayerBlob>,
}

/// Writes bytes as `blobs/sha256/<hex>` (once) and returns their descriptor.
pub(crate) fn write_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> anyhow::Result<Descriptor> {
    let digest = Digest::sha256_of(bytes);
    let path = dir.join("blobs").join("sha256").join(digest.hex());
    if !path.exists() {
        let tmp = dir.join(format!(".tmp-blob-{}", digest.hex()));
        fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &path)?;
    }
    Ok(Descriptor::new(media_type, digest, bytes.len() as u64))
}

fn push_unique(list: &mut Vec<Descriptor>, d: Descriptor) {
    if !list.iter().any(|x| x.digest == d.digest) {
        list.push(d);
    }
}

impl Generator<'_> {
    fn layer(&mut self, label: &str, compression: LayerCompression) -> anyhow::Result<LayerBlob> {
        let params = |label| LayerParams {
            seed: self.spec.seed,
            label,
            target_size: self.spec.layer_size,
            incompressible: self.spec.incompressible,
            compression,
        };
        write_layer(self.dir, &params(label))
    }

    fn base_layer(&mut self, compression: LayerCompression) -> anyhow::Result<LayerBlob> {
        if let Some(b) = self.bases.get(&compression) {
            return Ok(b.clone());
        }
        let label = match compression {
            LayerCompression::Gzip => "base-gzip",
            LayerCompression::Zstd => "base-zstd",
        };
        let blob = self.layer(label, compression)?;
        self.bases.insert(compression, blob.clone());
        Ok(blob)
    }

    /// Writes one platform's layers, config and manifest; returns the manifest
    /// descriptor and its blobs (manifest first).
    fn manifest(
        &mut self,
        image: usize,
        name: &str,
        arch: &str,
        fl: &Flavour,
    ) -> anyhow::Result<(Descriptor, Vec<Descriptor>)> {
        let mut layers = Vec::new();
        for k in 0..self.spec.layers_per_image {
            let blob = if k == 0 && self.spec.shared_base_layer {
                self.base_layer(fl.compression)?
            } else {
                self.layer(&format!("img{image}-{arch}-l{k}"), fl.compression)?
            };
            layers.push(blob);
        }
        let history: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(k, l)| {
                json!({
                    "created": "2021-06-01T00:00:00Z",
                    "created_by": format!("/bin/sh -c #(nop) ADD file:{} in / # layer {k}", l.diff_id.hex()),
                })
            })
            .collect();
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "created": "2021-06-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", format!("IMAGE_NAME={name}")],
                "Cmd": [format!("/usr/bin/{name}")],
                "WorkingDir": "/",
                "Labels": {
                    "org.opencontainers.image.version": self.spec.tag,
                    "io.ferry.fixture.seed": self.spec.seed.to_string(),
                },
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
            "history": history,
        });
        let config_desc = write_blob(self.dir, fl.config_type(), &serde_json::to_vec(&config)?)?;
        let layer_descs: Vec<Descriptor> = layers
            .iter()
            .map(|l| Descriptor::new(fl.layer_type(), l.digest.clone(), l.size))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": fl.manifest_type(),
            "config": config_desc,
            "layers": layer_descs,
        });
        let manifest_desc = write_blob(
            self.dir,
            fl.manifest_type(),
            &serde_json::to_vec(&manifest)?,
        )?;
        let mut blobs = vec![manifest_desc.clone(), config_desc];
        for l in layer_descs {
            push_unique(&mut blobs, l);
        }
        Ok((manifest_desc, blobs))
    }

    fn image(&mut self, i: usize) -> anyhow::Result<GeneratedImage> {
        let spec = self.spec;
        let docker = every(spec.docker_schema2_every, i);
        let zstd = !docker && every(spec.zstd_layers_every, i);
        let fl = Flavour {
            docker,
            compression: if zstd {
                LayerCompression::Zstd
            } else {
                LayerCompression::Gzip
            },
        };
        let name = format!("img-{i}");
        let reference = format!("{}/{name}:{}", spec.name_prefix, spec.tag);
        let (mut top, blobs) = if every(spec.multi_arch_every, i) {
            let mut children = Vec::new();
            let mut blobs = Vec::new();
            for arch in ["amd64", "arm64"] {
                let (mut desc, child_blobs) = self.manifest(i, &name, arch, &fl)?;
                desc.platform = Some(Platform {
                    architecture: arch.to_owned(),
                    os: "linux".to_owned(),
                    variant: None,
                });
                children.push(desc);
                for b in child_blobs {
                    push_unique(&mut blobs, b);
                }
            }
            let index =
                json!({ "schemaVersion": 2, "mediaType": fl.index_type(), "manifests": children });
            let top = write_blob(self.dir, fl.index_type(), &serde_json::to_vec(&index)?)?;
            blobs.insert(0, top.clone());
            (top, blobs)
        } else {
            let (top, blobs) = self.manifest(i, &name, "amd64", &fl)?;
            (top, blobs)
        };
        top.annotations
            .insert(ANNOTATION_REF_NAME.to_owned(), reference.clone());
        top.annotations
            .insert(ANNOTATION_CONTAINERD_NAME.to_owned(), reference.clone());
        Ok(GeneratedImage {
            reference,
            descriptor: top,
            blobs,
        })
    }
}

/// Writes an OCI image layout at `dir` (`oci-layout`, `index.json`,
/// `blobs/sha256/<hex>`); each `index.json` entry is annotated with both
/// `org.opencontainers.image.ref.name` and `io.containerd.image.name` set to the
/// full reference. `dir` may exist but must not already hold an `index.json`.
pub fn generate_layout(spec: &FixtureSpec, dir: &Path) -> anyhow::Result<Fixture> {
    ensure!(
        spec.layers_per_image >= 1,
        "layers_per_image must be at least 1"
    );
    ensure!(
        !dir.join("index.json").exists(),
        "{} already holds an index.json",
        dir.display()
    );
    fs::create_dir_all(dir.join("blobs").join("sha256"))
        .with_context(|| format!("creating layout {}", dir.display()))?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut g = Generator {
        spec,
        dir,
        bases: HashMap::new(),
    };
    let images = (0..spec.images)
        .map(|i| g.image(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut names = BTreeSet::new();
    for img in &images {
        ensure!(
            names.insert(&img.reference),
            "duplicate reference {}",
            img.reference
        );
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": images.iter().map(|i| &i.descriptor).collect::<Vec<_>>(),
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(Fixture { images })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::layout::{blob_path, verify_layout};

    fn mixed(seed: u64) -> FixtureSpec {
        FixtureSpec {
            seed,
            images: 6,
            layers_per_image: 2,
            layer_size: 8 * 1024,
            multi_arch_every: 2,
            docker_schema2_every: 3,
            zstd_layers_every: 5,
            ..FixtureSpec::default()
        }
    }

    fn digests(f: &Fixture) -> Vec<Digest> {
        f.unique_blobs().into_iter().map(|d| d.digest).collect()
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different_bytes() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let fa = generate_layout(&mixed(7), a.path()).unwrap();
        let fb = generate_layout(&mixed(7), b.path()).unwrap();
        let fc = generate_layout(&mixed(8), c.path()).unwrap();
        assert_eq!(fa, fb);
        assert_eq!(
            fs::read(a.path().join("index.json")).unwrap(),
            fs::read(b.path().join("index.json")).unwrap()
        );
        let (da, dc) = (digests(&fa), digests(&fc));
        assert!(
            da.iter().all(|d| !dc.contains(d)),
            "different seeds share a blob"
        );
    }

    #[test]
    fn layouts_verify_and_cover_every_flavour() {
        let dir = tempfile::tempdir().unwrap();
        let f = generate_layout(&mixed(1), dir.path()).unwrap();
        let summary = verify_layout(dir.path()).unwrap();
        assert_eq!(summary.blobs, f.unique_blobs().len());
        assert_eq!(summary.bytes, f.total_blob_bytes());
        let types: Vec<_> = f
            .images
            .iter()
            .map(|i| i.descriptor.media_type.as_str())
            .collect();
        // Images 1, 3, 5 multi-arch; 2, 5 docker; 4 zstd.
        assert_eq!(
            types,
            [
                media::OCI_MANIFEST,
                media::OCI_INDEX,
                media::DOCKER_MANIFEST,
                media::OCI_INDEX,
                media::OCI_MANIFEST,
                media::DOCKER_MANIFEST_LIST
            ]
        );
        assert_eq!(
            f.images[0].reference,
            "gcr.io/anthos-baremetal-release/img-0:1.8.0"
        );
        let all: Vec<_> = f.images.iter().flat_map(|i| &i.blobs).collect();
        assert!(all.iter().any(|d| d.media_type == media::OCI_LAYER_ZSTD));
        assert!(all.iter().any(|d| d.media_type == media::DOCKER_LAYER_GZIP));
        assert!(all.iter().any(|d| d.media_type == media::DOCKER_CONFIG));
        for img in &f.images {
            assert_eq!(img.blobs[0].digest, img.descriptor.digest);
            for d in &img.blobs {
                assert_eq!(
                    fs::metadata(blob_path(dir.path(), &d.digest))
                        .unwrap()
                        .len(),
                    d.size
                );
                if media::is_manifest_like(&d.media_type) {
                    let body: serde_json::Value = serde_json::from_slice(
                        &fs::read(blob_path(dir.path(), &d.digest)).unwrap(),
                    )
                    .unwrap();
                    assert_eq!(body["mediaType"], d.media_type.as_str());
                }
            }
        }
        // Multi-arch index: amd64 + arm64 children.
        let index: serde_json::Value = serde_json::from_slice(
            &fs::read(blob_path(dir.path(), &f.images[1].descriptor.digest)).unwrap(),
        )
        .unwrap();
        let archs: Vec<_> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["platform"]["architecture"].clone())
            .collect();
        assert_eq!(archs, ["amd64", "arm64"]);
    }

    #[test]
    fn shared_base_layer_is_one_blob_and_diff_ids_match() {
        let dir = tempfile::tempdir().unwrap();
        let f = generate_layout(&FixtureSpec::default(), dir.path()).unwrap();
        let first_layer = |img: &GeneratedImage| img.blobs[2].digest.clone();
        assert_eq!(first_layer(&f.images[0]), first_layer(&f.images[2]));
        // The config's diff_id is the sha256 of the decompressed layer.
        let img = &f.images[0];
        let config: serde_json::Value =
            serde_json::from_slice(&fs::read(blob_path(dir.path(), &img.blobs[1].digest)).unwrap())
                .unwrap();
        let layer = fs::File::open(blob_path(dir.path(), &img.blobs[2].digest)).unwrap();
        let mut hw = crate::tario::HashWriter::new(std::io::sink());
        std::io::copy(&mut flate2::read::GzDecoder::new(layer), &mut hw).unwrap();
        let (_, diff_id, _) = hw.finish();
        assert_eq!(config["rootfs"]["diff_ids"][0], diff_id.to_string());
        // Layer sizes land near the target.
        let size = img.blobs[2].size;
        assert!((32 * 1024..=160 * 1024).contains(&size), "{size}");
    }

    #[test]
    fn layers_are_real_tars_with_realistic_paths() {
        let dir = tempfile::tempdir().unwrap();
        let spec = FixtureSpec {
            images: 1,
            incompressible: true,
            zstd_layers_every: 1,
            ..FixtureSpec::default()
        };
        let f = generate_layout(&spec, dir.path()).unwrap();
        let layer = f.images[0]
            .blobs
            .iter()
            .find(|d| d.media_type == media::OCI_LAYER_ZSTD)
            .unwrap();
        let file = fs::File::open(blob_path(dir.path(), &layer.digest)).unwrap();
        let mut archive = tar::Archive::new(zstd::stream::read::Decoder::new(file).unwrap());
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(paths.contains(&"usr/bin/".to_owned()));
        assert!(
            paths
                .iter()
                .any(|p| p.starts_with("usr/bin/") && p.len() > 8),
            "{paths:?}"
        );
        // Incompressible: the zstd blob is not much smaller than its content.
        assert!(layer.size > 48 * 1024, "{}", layer.size);
    }
}
