//! Media types ferry recognises, and how each one is walked.

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Media type of the `oci-layout` file.
pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";

/// Every manifest media type, in the order sent in `Accept` headers.
pub const ALL_MANIFEST_TYPES: [&str; 4] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
];

/// What role a media type plays in an image graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An index or manifest list: its children are manifests or indexes.
    Index,
    /// An image manifest: its children are a config and layers.
    Manifest,
    /// Anything else (config, layer, signature payload, unknown): a leaf blob, passed through untouched.
    Blob,
}

/// Classifies a media type. Unknown types are leaf blobs and must pass through untouched.
pub fn kind_of(media_type: &str) -> Kind {
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Kind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        _ => Kind::Blob,
    }
}

/// True for manifest and index types (the things kept as raw JSON and walked).
pub fn is_manifest_like(media_type: &str) -> bool {
    kind_of(media_type) != Kind::Blob
}

/// The layer media type for a layer blob whose content starts with `head`,
/// used when synthesising OCI manifests for docker-archive packages.
pub fn sniff_oci_layer_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        OCI_LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        OCI_LAYER_ZSTD
    } else {
        OCI_LAYER_TAR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind_of(OCI_INDEX), Kind::Index);
        assert_eq!(kind_of(DOCKER_MANIFEST_LIST), Kind::Index);
        assert_eq!(kind_of(OCI_MANIFEST), Kind::Manifest);
        assert_eq!(kind_of(DOCKER_MANIFEST), Kind::Manifest);
        assert_eq!(kind_of(OCI_CONFIG), Kind::Blob);
        assert_eq!(kind_of("application/vnd.example.unknown+json"), Kind::Blob);
        assert!(!is_manifest_like(DOCKER_LAYER_GZIP));
    }

    #[test]
    fn sniffs_layer_compression() {
        assert_eq!(sniff_oci_layer_type(&[0x1f, 0x8b, 8, 0]), OCI_LAYER_GZIP);
        assert_eq!(
            sniff_oci_layer_type(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            OCI_LAYER_ZSTD
        );
        assert_eq!(sniff_oci_layer_type(b"etc/\0\0\0"), OCI_LAYER_TAR);
    }
}
