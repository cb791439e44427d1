//! Typed errors of the registry client. Messages never contain secrets.

use ferry_store::Digest;

/// One entry of a registry's JSON error body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct RegistryErrorEntry {
    /// `UPPER_SNAKE` code, e.g. `MANIFEST_BLOB_UNKNOWN`.
    pub code: String,
    /// Human message.
    #[serde(default)]
    pub message: String,
    /// Arbitrary JSON detail.
    #[serde(default)]
    pub detail: serde_json::Value,
}

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an error status.
    #[error("{method} {what}: HTTP {status}{}", format_entries(.errors))]
    Status {
        /// Request method.
        method: String,
        /// What was asked (URL path without query secrets).
        what: String,
        /// HTTP status.
        status: u16,
        /// Parsed error entries.
        errors: Vec<RegistryErrorEntry>,
        /// Seconds from `Retry-After`, if any.
        retry_after: Option<u64>,
    },
    /// The connection failed (refused, reset, DNS, timeout, stall).
    #[error("{what}: {detail}")]
    Transport {
        /// What was being done.
        what: String,
        /// The cause.
        detail: String,
        /// Whether the failure is worth retrying.
        retryable: bool,
    },
    /// The registry did not answer the client's very first request (nothing
    /// listens, or it accepted the connection and stayed silent). Not retried:
    /// a registry that never answered is more likely a wrong address than a
    /// passing fault (later failures, once it has answered, are retried).
    #[error("{what}: {detail}")]
    Unreachable {
        /// host:port.
        address: String,
        /// The request that was tried.
        what: String,
        /// What happened and what to do about it.
        detail: String,
    },
    /// The server's TLS certificate was rejected.
    #[error("TLS: the certificate presented by {host} was rejected ({detail}). {hint}")]
    Tls {
        /// host:port.
        host: String,
        /// rustls' reason.
        detail: String,
        /// What to do about it.
        hint: String,
    },
    /// An `https://` registry answered in something other than TLS (plain HTTP).
    #[error("TLS: {host} did not answer in TLS ({detail}). If the registry serves plain HTTP, say so explicitly: --private-registry http://{host}[/NAMESPACE] (ferry never falls back to HTTP by itself)")]
    NotTls {
        /// host:port.
        host: String,
        /// rustls' reason.
        detail: String,
    },
    /// An `http://` registry answered like a TLS server hit with plain HTTP
    /// (Go's bare `HTTP/1.0 400`, no registry headers).
    #[error("{host} answered plain HTTP with a bare HTTP 400 and no registry headers: it serves HTTPS. Drop http:// from --private-registry (and pass --cacert CA.pem if its CA is private)")]
    ExpectsTls {
        /// host:port.
        host: String,
    },
    /// Authentication failed or no credential was accepted.
    #[error("authentication to {registry} failed: {detail}")]
    Auth {
        /// Registry host.
        registry: String,
        /// Why (never the secret).
        detail: String,
    },
    /// The registry sent something that violates the protocol.
    #[error("{what}: unexpected registry answer: {detail}")]
    Protocol {
        /// What was being done.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// Uploaded content did not get the expected digest.
    #[error("registry reports digest {actual} for {what}, expected {expected}")]
    DigestMismatch {
        /// What was uploaded.
        what: String,
        /// Expected digest.
        expected: Digest,
        /// Digest the registry reported.
        actual: String,
    },
    /// A manifest larger than registries accept (distribution's 4 MiB):
    /// refused before it is read whole.
    #[error("{what}: the manifest is {size} bytes, over the {limit}-byte (4 MiB) limit registries accept; ferry refuses it", limit = ferry_store::descriptor::MAX_MANIFEST_BYTES)]
    ManifestTooLarge {
        /// The reference or digest.
        what: String,
        /// Its size (declared, or read so far).
        size: u64,
    },
    /// The registry does not have what was asked for (HTTP 404).
    #[error("{what}: not found in the registry (HTTP 404): check the repository, tag or digest")]
    NotFound {
        /// The reference, or the blob and repository.
        what: String,
    },
    /// Bad user input (registry address, flags).
    #[error("{0}")]
    Usage(String),
    /// Reading local content failed.
    #[error("{what}: {source}")]
    Local {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Longest `detail` of a registry error entry kept in a message, in characters.
const DETAIL_MAX: usize = 300;

fn format_entries(errors: &[RegistryErrorEntry]) -> String {
    let mut s = String::new();
    for e in errors {
        s.push_str(&format!(" {}", e.code));
        if !e.message.is_empty() {
            s.push_str(&format!(": {}", e.message));
        }
        if !e.detail.is_null() {
            // At most DETAIL_MAX characters (not bytes: details may hold any UTF-8).
            let d: String = e.detail.to_string().chars().take(DETAIL_MAX).collect();
            s.push_str(&format!(" ({d})"));
        }
    }
    s
}

impl RegistryError {
    /// The HTTP status, if the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True if the registry's answer carries this error code.
    pub fn has_code(&self, code: &str) -> bool {
        matches!(self, RegistryError::Status { errors, .. } if errors.iter().any(|e| e.code == code))
    }

    /// Whether the one retry layer should try again.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => {
                matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
            }
            RegistryError::Transport { retryable, .. } => *retryable,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_non_ascii_detail_is_cut_at_a_character_not_a_byte() {
        let entry = RegistryErrorEntry {
            code: "DENIED".into(),
            message: "refusé".into(),
            // 299 ASCII bytes then 'é' (2 bytes) straddles byte 300.
            detail: serde_json::Value::String(format!("{}é{}", "x".repeat(298), "y".repeat(50))),
        };
        let text = format_entries(&[entry]);
        assert!(text.starts_with(" DENIED: refusé ("), "{text}");
        assert!(text.contains('é'));
        let inside = text.split_once(" (").unwrap().1;
        assert_eq!(inside.trim_end_matches(')').chars().count(), DETAIL_MAX);
    }
}
