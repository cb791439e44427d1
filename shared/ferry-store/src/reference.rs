//! Image references (`host/path:tag@digest`) with Docker-style normalisation.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host (with port), e.g. `gcr.io` or `10.0.0.5:5000`.
    pub host: String,
    /// Repository path without the host, e.g. `anthos-baremetal-release/foo`.
    pub repository: String,
    /// Tag, if any.
    pub tag: Option<String>,
    /// Digest, if any.
    pub digest: Option<Digest>,
}

/// Why a string is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {why}")]
pub struct ReferenceError {
    /// The input.
    pub input: String,
    /// What is wrong with it.
    pub why: String,
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Reference, ReferenceError> {
        let err = |why: &str| ReferenceError {
            input: input.to_owned(),
            why: why.to_owned(),
        };
        if input.is_empty() || input.len() > 4096 {
            return Err(err("empty or too long"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| err(&e.to_string()))?),
            ),
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (
                &rest[..last_slash + i],
                Some(rest[last_slash + i + 1..].to_owned()),
            ),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(err("tag must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}"));
            }
        }
        let (host, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            Some(_) => ("docker.io".to_owned(), name.to_owned()),
            None => ("docker.io".to_owned(), format!("library/{name}")),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(err("bad registry host"));
        }
        if !valid_repository(&repository) {
            return Err(err(
                "repository path must be lowercase components [a-z0-9] joined by . _ __ or -",
            ));
        }
        Ok(Reference {
            host,
            repository,
            tag,
            digest,
        })
    }
}

impl Reference {
    /// True if `s` is a full reference with an explicit host component and a tag or
    /// digest (so `org.opencontainers.image.ref.name` values like `1.0` are not).
    pub fn is_full(s: &str) -> bool {
        match s.split_once('/') {
            Some((first, _))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                s.parse::<Reference>()
                    .map(|r| r.tag.is_some() || r.digest.is_some())
                    .unwrap_or(false)
            }
            _ => false,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

fn valid_repository(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|component| {
            let b = component.as_bytes();
            let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty()
                && alnum(&b[0])
                && alnum(&b[b.len() - 1])
                && b.iter().all(|c| alnum(c) || b"._-".contains(c))
                && !component.contains("..")
                && !component.contains("___")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_references() {
        let r: Reference = "gcr.io/anthos-baremetal-release/foo:1.8.0".parse().unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str()),
            ("gcr.io", "anthos-baremetal-release/foo")
        );
        assert_eq!(r.tag.as_deref(), Some("1.8.0"));
        let r: Reference = "localhost:5000/a/b:1@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .unwrap();
        assert_eq!(r.host, "localhost:5000");
        assert!(r.digest.is_some());
        assert_eq!(r.to_string().parse::<Reference>().unwrap(), r);
    }

    #[test]
    fn normalises_docker_hub_names() {
        assert_eq!(
            "busybox:1.36".parse::<Reference>().unwrap().to_string(),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            "user/app".parse::<Reference>().unwrap().to_string(),
            "docker.io/user/app"
        );
    }

    #[test]
    fn rejects_bad_references_and_knows_bare_tags() {
        for bad in [
            "",
            "gcr.io/UPPER/x:1",
            "gcr.io/a//b:1",
            "gcr.io/a/b:-bad",
            "gcr.io/../x:1",
            "gcr.io/a/b@sha256:zz",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "accepted {bad:?}");
        }
        assert!(Reference::is_full("gcr.io/a/b:1.0"));
        assert!(!Reference::is_full("1.0"));
        assert!(!Reference::is_full("latest"));
        assert!(!Reference::is_full("gcr.io/a/b"));
    }
}
