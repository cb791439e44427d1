//! The push target (`--private-registry HOST:PORT[/NAMESPACE]`) and the
//! mirror path mapping: the source host is dropped, its path kept, the
//! namespace prefixed (`gcr.io/a/b:1.0` → `HOST:PORT/NAMESPACE/a/b:1.0`).

use ferry_store::Reference;

use crate::error::RegistryError;

/// Where images go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` unless the user wrote an explicit `http://`.
    pub scheme: String,
    /// `HOST:PORT` (or `HOST`), as typed.
    pub host: String,
    /// Optional namespace (no leading or trailing slash).
    pub namespace: Option<String>,
}

/// One image's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// Repository path inside the registry, e.g. `ns/anthos-baremetal-release/foo`.
    pub repository: String,
    /// Tag to set (if the source reference has one).
    pub tag: Option<String>,
}

impl Target {
    /// Parses `[http://|https://]HOST[:PORT][/NAMESPACE]`.
    pub fn parse(s: &str) -> Result<Target, RegistryError> {
        let bad = |why: &str| {
            RegistryError::Usage(format!(
                "--private-registry {s:?}: {why} (expected HOST:PORT[/NAMESPACE])"
            ))
        };
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            ("http", r)
        } else if let Some(r) = s.strip_prefix("https://") {
            ("https", r)
        } else if s.contains("://") {
            return Err(bad("only http:// and https:// are supported"));
        } else {
            ("https", s)
        };
        let rest = rest.trim_end_matches('/');
        let (host, namespace) = match rest.split_once('/') {
            Some((h, ns)) => (h, Some(ns.to_owned())),
            None => (rest, None),
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad("bad host"));
        }
        if let Some(ns) = &namespace {
            let probe = format!("{host}/{ns}/x:1");
            if probe.parse::<Reference>().is_err() {
                return Err(bad(
                    "namespace must be lowercase path components [a-z0-9._-]",
                ));
            }
        }
        Ok(Target {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
            namespace,
        })
    }

    /// `scheme://host`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.host)
    }

    /// Host name without port.
    pub fn hostname(&self) -> &str {
        match self.host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.is_empty() => h,
            _ => &self.host,
        }
    }

    /// Port (explicit, else the scheme's default).
    pub fn port(&self) -> u16 {
        match self.host.rsplit_once(':') {
            Some((_, p)) => p
                .parse()
                .unwrap_or(if self.scheme == "http" { 80 } else { 443 }),
            None => {
                if self.scheme == "http" {
                    80
                } else {
                    443
                }
            }
        }
    }

    /// Maps a full source reference to its repository and tag on this target.
    pub fn map(&self, source: &str) -> Result<Mapped, RegistryError> {
        let r: Reference =
            source
                .parse()
                .map_err(|e: ferry_store::reference::ReferenceError| {
                    RegistryError::Usage(e.to_string())
                })?;
        let repository = match &self.namespace {
            Some(ns) => format!("{ns}/{}", r.repository),
            None => r.repository.clone(),
        };
        Ok(Mapped {
            repository,
            tag: r.tag,
        })
    }

    /// The full destination reference shown to users.
    pub fn display_ref(&self, m: &Mapped) -> String {
        match &m.tag {
            Some(t) => format!("{}/{}:{t}", self.host, m.repository),
            None => format!("{}/{}", self.host, m.repository),
        }
    }

    /// containerd mirror endpoint: `https://HOST:PORT` or `https://HOST:PORT/v2/NAMESPACE`.
    pub fn mirror_endpoint(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/v2/{ns}", self.base_url()),
            None => self.base_url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_like_bmctl() {
        let t = Target::parse("10.0.0.5:5000/ns").unwrap();
        let m = t.map("gcr.io/anthos-baremetal-release/foo:1.8.0").unwrap();
        assert_eq!(m.repository, "ns/anthos-baremetal-release/foo");
        assert_eq!(m.tag.as_deref(), Some("1.8.0"));
        assert_eq!(
            t.display_ref(&m),
            "10.0.0.5:5000/ns/anthos-baremetal-release/foo:1.8.0"
        );
        assert_eq!(t.mirror_endpoint(), "https://10.0.0.5:5000/v2/ns");
        let plain = Target::parse("http://127.0.0.1:5000").unwrap();
        assert_eq!(plain.map("gcr.io/a/b:1.0").unwrap().repository, "a/b");
        assert_eq!(plain.mirror_endpoint(), "http://127.0.0.1:5000");
        assert_eq!((plain.hostname(), plain.port()), ("127.0.0.1", 5000));
        assert_eq!(
            Target::parse("reg.local/a/b/")
                .unwrap()
                .namespace
                .as_deref(),
            Some("a/b")
        );
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in ["", "ftp://x", "host:5000/UPPER", "bad host"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
