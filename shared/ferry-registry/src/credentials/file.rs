//! Reading credentials files: Docker `config.json` and containers `auth.json` share a format
//! (`auths`, `credHelpers`, `credsStore`). Errors name keys and fields, never values.

use std::io;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Map, Value};

use super::{canonical_host, docker_key_host, Credential, CredentialError, Registry, Secret};

/// One `auths` entry. Empty strings count as absent.
#[derive(Default)]
pub(super) struct AuthEntry {
    pub(super) auth: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) identitytoken: Option<String>,
    pub(super) registrytoken: bool,
}

impl AuthEntry {
    /// The user name in `auth`, if it decodes (errors are reported by [`entry_credential`]).
    pub(super) fn auth_username(&self) -> Option<String> {
        let (u, _) = decode_auth(self.auth.as_deref()?)?;
        Some(u).filter(|u| !u.is_empty())
    }
}

pub(super) struct CredFile {
    /// Sorted by key, so lookups are deterministic.
    pub(super) auths: Vec<(String, AuthEntry)>,
    pub(super) cred_helpers: Vec<(String, String)>,
    pub(super) creds_store: Option<String>,
}

impl CredFile {
    /// `credHelpers` for the registry: exact key first, then any key naming the same host.
    pub(super) fn cred_helper(&self, reg: &Registry<'_>) -> Option<String> {
        let exact = [reg.host.to_string(), reg.server_address()];
        self.cred_helpers
            .iter()
            .find(|(k, _)| exact.contains(k))
            .or_else(|| {
                let want = canonical_host(reg.host);
                self.cred_helpers
                    .iter()
                    .find(|(k, _)| canonical_host(docker_key_host(k)) == want)
            })
            .map(|(_, h)| h.clone())
    }

    /// Docker's lookup: exact key first, then any key whose host part (scheme and path stripped,
    /// port kept) is the registry's host. Among several, one with credentials wins.
    pub(super) fn find_docker_entry(&self, reg: &Registry<'_>) -> Option<(&str, &AuthEntry)> {
        let exact = [reg.host.to_string(), reg.server_address()];
        if let Some((k, e)) = self.auths.iter().find(|(k, _)| exact.contains(k)) {
            return Some((k, e));
        }
        let want = canonical_host(reg.host);
        let mut matches = self
            .auths
            .iter()
            .filter(|(k, _)| canonical_host(docker_key_host(k)) == want)
            .map(|(k, e)| (k.as_str(), e));
        let first = matches.next()?;
        if first.1.has_any_secret() {
            return Some(first);
        }
        Some(matches.find(|(_, e)| e.has_any_secret()).unwrap_or(first))
    }

    /// containers/image's lookup: `host/ns/repo`, `host/ns`, `host` (most specific first), then
    /// keys with a scheme (path dropped) or bare host keys that normalise to the host.
    pub(super) fn find_containers_entry(&self, reg: &Registry<'_>) -> Option<(&str, &AuthEntry)> {
        let mut candidates = Vec::new();
        let mut prefix = reg.path;
        while !prefix.is_empty() {
            candidates.push(format!("{}/{prefix}", reg.host));
            prefix = prefix.rsplit_once('/').map_or("", |(p, _)| p);
        }
        candidates.push(reg.host.to_string());
        for c in &candidates {
            if let Some((k, e)) = self.auths.iter().find(|(k, _)| k.eq_ignore_ascii_case(c)) {
                return Some((k, e));
            }
        }
        let want = canonical_host(reg.host);
        self.auths
            .iter()
            .find(|(k, _)| {
                let has_scheme = k.starts_with("http://") || k.starts_with("https://");
                (has_scheme || !k.contains('/')) && canonical_host(docker_key_host(k)) == want
            })
            .map(|(k, e)| (k.as_str(), e))
    }
}

impl AuthEntry {
    pub(super) fn has_any_secret(&self) -> bool {
        self.auth.is_some() || self.password.is_some() || self.identitytoken.is_some()
    }
}

/// Reads and parses a credentials file. A missing file is recorded in `tried` (or is an error
/// when the user named it explicitly).
pub(super) fn read_config(
    path: &Path,
    explicit: bool,
    label: &str,
    tried: &mut Vec<String>,
) -> Result<Option<CredFile>, CredentialError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if explicit {
                return Err(CredentialError::BadConfig {
                    path: path.to_path_buf(),
                    why: "file not found".into(),
                });
            }
            tried.push(format!("{label} (file not found)"));
            return Ok(None);
        }
        Err(source) => {
            return Err(CredentialError::ReadConfig {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse_config(path, &bytes).map(Some)
}

/// Parses `config.json` / `auth.json`. Error texts name keys and fields, never values:
/// serde_json's own messages can quote string values, so only its position is used.
pub(super) fn parse_config(path: &Path, bytes: &[u8]) -> Result<CredFile, CredentialError> {
    let bad = |why: String| CredentialError::BadConfig {
        path: path.to_path_buf(),
        why,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // docker treats an empty config file as an empty config.
        return Ok(CredFile {
            auths: Vec::new(),
            cred_helpers: Vec::new(),
            creds_store: None,
        });
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "not valid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(top) = value else {
        return Err(bad("the top level is not a JSON object".into()));
    };

    let mut auths = Vec::new();
    if let Some(a) = object_field(&top, "auths", &bad)? {
        for (key, v) in a {
            let entry = match v {
                Value::Null => AuthEntry::default(),
                Value::Object(o) => {
                    let field = |name: &str| -> Result<Option<String>, CredentialError> {
                        match o.get(name) {
                            None | Some(Value::Null) => Ok(None),
                            Some(Value::String(s)) if s.is_empty() => Ok(None),
                            Some(Value::String(s)) => Ok(Some(s.clone())),
                            Some(_) => Err(bad(format!("auths[{key:?}].{name} is not a string"))),
                        }
                    };
                    AuthEntry {
                        auth: field("auth")?,
                        username: field("username")?,
                        password: field("password")?,
                        identitytoken: field("identitytoken")?,
                        registrytoken: field("registrytoken")?.is_some(),
                    }
                }
                _ => return Err(bad(format!("auths[{key:?}] is not an object"))),
            };
            auths.push((key.clone(), entry));
        }
    }
    auths.sort_by(|a, b| a.0.cmp(&b.0));

    let mut cred_helpers = Vec::new();
    if let Some(h) = object_field(&top, "credHelpers", &bad)? {
        for (key, v) in h {
            match v {
                Value::String(s) if !s.is_empty() => cred_helpers.push((key.clone(), s.clone())),
                Value::String(_) | Value::Null => {}
                _ => return Err(bad(format!("credHelpers[{key:?}] is not a string"))),
            }
        }
    }
    cred_helpers.sort();

    let creds_store = match top.get("credsStore") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("credsStore is not a string".into())),
    };
    Ok(CredFile {
        auths,
        cred_helpers,
        creds_store,
    })
}

pub(super) fn object_field<'m>(
    top: &'m Map<String, Value>,
    name: &str,
    bad: &dyn Fn(String) -> CredentialError,
) -> Result<Option<&'m Map<String, Value>>, CredentialError> {
    match top.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(bad(format!("{name} is not a JSON object"))),
    }
}

/// Decodes an `auth` field: base64 of `user:password`, split at the first `:`, NULs trimmed.
pub(super) fn decode_auth(auth: &str) -> Option<(String, String)> {
    let auth = auth.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (u, p) = text.trim_matches('\0').split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// The credential in an `auths` entry, if any. `allow_plain` reads `username`/`password` fields
/// (docker does; containers/image does not).
pub(super) fn entry_credential(
    entry: &AuthEntry,
    key: &str,
    path: &Path,
    allow_plain: bool,
) -> Result<Option<Credential>, CredentialError> {
    let (username, password) = match &entry.auth {
        Some(auth) => decode_auth(auth).ok_or_else(|| CredentialError::BadConfig {
            path: path.to_path_buf(),
            why: format!("auths[{key:?}].auth is not base64 of \"user:password\""),
        })?,
        None if allow_plain => (
            entry.username.clone().unwrap_or_default(),
            entry.password.clone().unwrap_or_default(),
        ),
        None => (String::new(), String::new()),
    };
    let username = if username.is_empty() && allow_plain {
        entry.username.clone().unwrap_or_default()
    } else {
        username
    };
    if let Some(token) = &entry.identitytoken {
        return Ok(Some(Credential::IdentityToken {
            username,
            token: Secret(token.clone()),
        }));
    }
    if username.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic {
        username,
        password: Secret(password),
    }))
}
