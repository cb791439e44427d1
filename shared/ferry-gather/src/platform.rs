//! `--platform OS/ARCH[/VARIANT]`: which children of an index are kept. The
//! kept index is a NEW document (same `mediaType`, same annotations and other
//! fields, only the kept manifests, serialised deterministically), so its
//! digest is not the source's: pulls by tag get it, a pull by the source's
//! digest cannot be served by a mirror of the package.

use ferry_store::Descriptor;
use serde_json::Value;

use crate::error::PackError;

/// One `--platform` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`.
    pub os: String,
    /// `amd64`.
    pub architecture: String,
    /// `v8`, when given (else any variant matches).
    pub variant: Option<String>,
}

impl std::str::FromStr for PlatformSpec {
    type Err = PackError;

    fn from_str(s: &str) -> Result<PlatformSpec, PackError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(PlatformSpec {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(PlatformSpec {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(PackError::BadPlatform(s.to_owned())),
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl PlatformSpec {
    /// Whether an index entry's `platform` matches.
    pub fn matches(&self, entry: &Value) -> bool {
        let p = &entry["platform"];
        p["os"].as_str() == Some(self.os.as_str())
            && p["architecture"].as_str() == Some(self.architecture.as_str())
            && self
                .variant
                .as_ref()
                .is_none_or(|v| p["variant"].as_str() == Some(v.as_str()))
    }
}

/// `os/arch[/variant]` of an index entry (`?` for what it lacks).
pub fn platform_of(entry: &Value) -> String {
    let p = &entry["platform"];
    let mut s = format!(
        "{}/{}",
        p["os"].as_str().unwrap_or("?"),
        p["architecture"].as_str().unwrap_or("?")
    );
    if let Some(v) = p["variant"].as_str() {
        s.push('/');
        s.push_str(v);
    }
    s
}

/// An index filtered to `wanted`.
#[derive(Debug, Clone)]
pub struct Filtered {
    /// The new index's exact bytes.
    pub bytes: Vec<u8>,
    /// Its descriptor (the source's media type).
    pub descriptor: Descriptor,
    /// Platforms kept (`linux/amd64`), in the index's order.
    pub kept: Vec<String>,
    /// Manifests the source index lists.
    pub of: usize,
}

/// What filtering an index's bytes to `wanted` gives: `Ok(None)` when every
/// child is kept (the index stays as it is, digest unchanged); `Err` with the
/// platforms it has when none matches.
pub fn filter_index(
    index: &Descriptor,
    bytes: &[u8],
    wanted: &[PlatformSpec],
) -> Result<Option<Filtered>, Vec<String>> {
    let Ok(mut doc) = serde_json::from_slice::<Value>(bytes) else {
        return Err(Vec::new());
    };
    let entries: Vec<Value> = doc["manifests"].as_array().cloned().unwrap_or_default();
    let (kept, dropped): (Vec<&Value>, Vec<&Value>) = entries
        .iter()
        .partition(|e| wanted.iter().any(|w| w.matches(e)));
    if kept.is_empty() {
        return Err(entries.iter().map(platform_of).collect());
    }
    if dropped.is_empty() {
        return Ok(None);
    }
    let names = kept.iter().map(|e| platform_of(e)).collect();
    doc["manifests"] = Value::Array(kept.into_iter().cloned().collect());
    let new = serde_json::to_vec(&doc).map_err(|_| Vec::new())?;
    Ok(Some(Filtered {
        descriptor: Descriptor::new(
            index.media_type.clone(),
            ferry_store::Digest::sha256_of(&new),
            new.len() as u64,
        ),
        bytes: new,
        kept: names,
        of: entries.len(),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use ferry_store::{media, Digest};
    use serde_json::json;

    fn index() -> (Descriptor, Vec<u8>) {
        let entry = |arch: &str, variant: Option<&str>, n: u8| {
            let mut p = json!({"os": "linux", "architecture": arch});
            if let Some(v) = variant {
                p["variant"] = json!(v);
            }
            json!({"mediaType": media::OCI_MANIFEST, "digest": Digest::sha256_of(&[n]).to_string(), "size": 10, "platform": p})
        };
        let doc = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
            "annotations": {"org.opencontainers.image.created": "2026-01-01"},
            "manifests": [entry("amd64", None, 1), entry("arm64", Some("v8"), 2), entry("arm", Some("v7"), 3)]});
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        (
            Descriptor::new(
                media::OCI_INDEX,
                Digest::sha256_of(&bytes),
                bytes.len() as u64,
            ),
            bytes,
        )
    }

    #[test]
    fn an_index_keeps_only_the_platforms_asked_with_its_other_fields_and_a_new_digest() {
        let (desc, bytes) = index();
        let wanted: Vec<PlatformSpec> = vec![
            "linux/arm64".parse().unwrap(),
            "linux/amd64".parse().unwrap(),
        ];
        let f = filter_index(&desc, &bytes, &wanted).unwrap().unwrap();
        assert_eq!(f.kept, vec!["linux/amd64", "linux/arm64/v8"]);
        assert_eq!(f.of, 3);
        assert_ne!(f.descriptor.digest, desc.digest);
        assert_eq!(f.descriptor.digest, Digest::sha256_of(&f.bytes));
        assert_eq!(f.descriptor.media_type, media::OCI_INDEX);
        let doc: Value = serde_json::from_slice(&f.bytes).unwrap();
        assert_eq!(
            doc["annotations"]["org.opencontainers.image.created"],
            "2026-01-01"
        );
        assert_eq!(doc["manifests"].as_array().unwrap().len(), 2);
        // The same input gives the same bytes.
        let again = filter_index(&desc, &bytes, &wanted).unwrap().unwrap();
        assert_eq!(again.bytes, f.bytes);
        // A variant narrows; everything kept = the index unchanged; nothing kept = what it has.
        let v7 = filter_index(&desc, &bytes, &["linux/arm/v7".parse().unwrap()])
            .unwrap()
            .unwrap();
        assert_eq!(v7.kept, vec!["linux/arm/v7"]);
        let all: Vec<PlatformSpec> = ["linux/amd64", "linux/arm64", "linux/arm"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert!(filter_index(&desc, &bytes, &all).unwrap().is_none());
        let none = filter_index(&desc, &bytes, &["windows/amd64".parse().unwrap()]).unwrap_err();
        assert_eq!(none, vec!["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux amd64"] {
            assert!(bad.parse::<PlatformSpec>().is_err(), "{bad}");
        }
    }
}
