//! Authentication: Basic, and Bearer tokens fetched from the realm the registry
//! names (GET with Basic credentials; OAuth2 POST for identity tokens, falling
//! back to GET), cached per scope set and refreshed when they expire.
//! Secrets live only in [`Credential`] and in the cache; never in errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::challenge::{self, Challenge};
use crate::credentials::{Credential, Secret};
use crate::error::RegistryError;
use crate::transport::{Body, Transport};

/// What the registry asked for, learnt from its first 401.
#[derive(Debug, Clone)]
enum Scheme {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Shared, thread-safe authentication state of one registry.
pub struct Authenticator {
    registry: String,
    credential: Option<Credential>,
    scheme: Mutex<Option<Scheme>>,
    tokens: Mutex<HashMap<String, (Secret, Instant)>>,
    /// One gate per scope set: threads that need the same token wait for one fetch.
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    token_fetches: std::sync::atomic::AtomicU64,
}

impl Authenticator {
    /// An authenticator for `registry` with an optional credential (None = anonymous).
    pub fn new(registry: &str, credential: Option<Credential>) -> Authenticator {
        Authenticator {
            registry: registry.to_owned(),
            credential,
            scheme: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            token_fetches: Default::default(),
        }
    }

    /// How many tokens were fetched so far.
    pub fn token_fetches(&self) -> u64 {
        self.token_fetches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn basic_value(&self) -> Option<String> {
        match &self.credential {
            Some(Credential::Basic { username, password }) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            )),
            _ => None,
        }
    }

    /// The `Authorization` value to send for `scopes`, if any is known yet.
    pub fn header_for(&self, scopes: &[String]) -> Option<String> {
        let scheme = self
            .scheme
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match scheme? {
            Scheme::Basic => self.basic_value(),
            Scheme::Bearer { .. } => {
                let key = scope_key(scopes);
                let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                tokens
                    .get(&key)
                    .filter(|(_, expires)| Instant::now() < *expires)
                    .map(|(t, _)| format!("Bearer {}", t.expose()))
            }
        }
    }

    /// The `Authorization` value to send for `scopes`, as [`Self::header_for`];
    /// but once the registry is known to want Bearer tokens, a scope set with
    /// no valid token gets one first (fetched once however many threads ask
    /// at the same time), so that the request does not earn a 401 first.
    pub fn authorize(
        &self,
        transport: &Transport,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        if let Some(value) = self.header_for(scopes) {
            return Ok(Some(value));
        }
        let scheme = self
            .scheme
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(Scheme::Bearer { realm, service }) = scheme else {
            return Ok(None);
        };
        if scopes.is_empty() {
            return Ok(None);
        }
        let gate = self
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(scope_key(scopes))
            .or_default()
            .clone();
        let _one_fetch = gate.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = self.header_for(scopes) {
            return Ok(Some(value)); // another thread fetched it meanwhile
        }
        self.store_token(transport, &realm, service.as_deref(), scopes)?;
        Ok(self.header_for(scopes))
    }

    /// Fetches a token for `scopes` and caches it for a little less than its lifetime.
    fn store_token(
        &self,
        transport: &Transport,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(), RegistryError> {
        let (token, lifetime) = self.fetch_token(transport, realm, service, scopes)?;
        // Refresh a little before the registry would reject it, and
        // never keep a token past its own lifetime.
        let valid = lifetime
            .saturating_sub(lifetime / 10)
            .max(Duration::from_secs(5))
            .min(lifetime);
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope_key(scopes), (token, Instant::now() + valid));
        Ok(())
    }

    /// True once a 401 taught the scheme (Basic, or Bearer and its realm).
    pub fn knows_scheme(&self) -> bool {
        self.scheme
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Handles a 401: learns the scheme from `www_authenticate` and obtains a
    /// fresh token for `scopes` if Bearer. A 401 without a usable challenge
    /// reuses the scheme learnt before (registries that challenge only on
    /// `/v2/`). Errors if nothing can be done.
    pub fn on_unauthorized(
        &self,
        transport: &Transport,
        www_authenticate: Option<&str>,
        scopes: &[String],
    ) -> Result<(), RegistryError> {
        let challenges = www_authenticate.map(challenge::parse).unwrap_or_default();
        let learnt = self
            .scheme
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let scheme = pick(&challenges)
            .or(learnt)
            .ok_or_else(|| RegistryError::Auth {
                registry: self.registry.clone(),
                detail: "the registry answered 401 without a Basic or Bearer challenge".into(),
            })?;
        *self.scheme.lock().unwrap_or_else(|p| p.into_inner()) = Some(scheme.clone());
        match scheme {
            Scheme::Basic => {
                if self.credential.is_none() {
                    return Err(self.needs_credentials());
                }
                Ok(())
            }
            Scheme::Bearer { realm, service } => {
                self.store_token(transport, &realm, service.as_deref(), scopes)
            }
        }
    }

    /// Forgets the token for `scopes` (after it was refused).
    pub fn invalidate(&self, scopes: &[String]) {
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&scope_key(scopes));
    }

    fn needs_credentials(&self) -> RegistryError {
        RegistryError::Auth {
            registry: self.registry.clone(),
            detail: "the registry requires credentials (use --username with --password-stdin, --docker-config, or a docker login)".into(),
        }
    }

    fn fetch_token(
        &self,
        transport: &Transport,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(Secret, Duration), RegistryError> {
        self.token_fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let refused = |status: u16| RegistryError::Auth {
            registry: self.registry.clone(),
            detail: format!(
                "the token service at {} refused the credentials (HTTP {status})",
                crate::transport::redact(realm)
            ),
        };
        if let Some(Credential::IdentityToken { token, .. }) = &self.credential {
            let mut form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", token.expose().to_owned()),
                ("client_id", "ferry".to_owned()),
            ];
            if let Some(s) = service {
                form.push(("service", s.to_owned()));
            }
            form.push(("scope", scopes.join(" ")));
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={}", urlencode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let resp = transport.send_to_realm(
                "POST",
                realm,
                &[(
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_owned(),
                )],
                None,
                Body::Bytes(body.as_bytes()),
            )?;
            if resp.status == 200 {
                return parse_token(resp.bytes(1 << 20)?, &self.registry);
            }
            if !matches!(resp.status, 400 | 401 | 404 | 405) {
                return Err(refused(resp.status));
            }
        }
        let mut url = realm.to_owned();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        if let Some(s) = service {
            url.push_str(&format!("{sep}service={}", urlencode(s)));
            sep = '&';
        }
        for s in scopes {
            url.push_str(&format!("{sep}scope={}", urlencode(s)));
            sep = '&';
        }
        let resp = transport.send_to_realm(
            "GET",
            &url,
            &[],
            self.basic_value().as_deref(),
            Body::Empty,
        )?;
        match resp.status {
            200 => parse_token(resp.bytes(1 << 20)?, &self.registry),
            401 | 403 if self.credential.is_none() => Err(self.needs_credentials()),
            s => Err(refused(s)),
        }
    }
}

impl Transport {
    /// Sends a request to the token realm (which may be another host): the
    /// given `authorization` goes to the realm only, by design.
    pub fn send_to_realm(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        authorization: Option<&str>,
        body: Body<'_>,
    ) -> Result<crate::transport::Response, RegistryError> {
        self.send_with_origin(method, url, headers, authorization, body, url)
    }
}

fn pick(challenges: &[Challenge]) -> Option<Scheme> {
    challenges
        .iter()
        .find(|c| c.scheme == "bearer" && c.params.contains_key("realm"))
        .map(|c| Scheme::Bearer {
            realm: c.params["realm"].clone(),
            service: c.params.get("service").cloned(),
        })
        .or_else(|| {
            challenges
                .iter()
                .find(|c| c.scheme == "basic")
                .map(|_| Scheme::Basic)
        })
}

fn scope_key(scopes: &[String]) -> String {
    let mut s: Vec<&String> = scopes.iter().collect();
    s.sort();
    s.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

fn parse_token(body: Vec<u8>, registry: &str) -> Result<(Secret, Duration), RegistryError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| RegistryError::Auth {
        registry: registry.to_owned(),
        detail: format!("token service answered something that is not a token response: {e}"),
    })?;
    let token = t
        .token
        .or(t.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::Auth {
            registry: registry.to_owned(),
            detail: "token service answered without a token".into(),
        })?;
    // The distribution spec's minimum lifetime is 60 s when none is given.
    Ok((
        Secret::new(token),
        Duration::from_secs(t.expires_in.unwrap_or(60).max(1)),
    ))
}

/// Percent-encodes a query or form value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_keys_ignore_order_and_encoding_is_strict() {
        assert_eq!(
            scope_key(&["b".into(), "a".into()]),
            scope_key(&["a".into(), "b".into()])
        );
        assert_eq!(
            urlencode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn picks_bearer_over_basic() {
        let c = challenge::parse(r#"Basic realm="r", Bearer realm="https://t/token",service="s""#);
        assert!(
            matches!(pick(&c), Some(Scheme::Bearer { ref realm, .. }) if realm == "https://t/token")
        );
        assert!(matches!(
            pick(&challenge::parse(r#"Basic realm="r""#)),
            Some(Scheme::Basic)
        ));
        assert!(pick(&challenge::parse("Negotiate")).is_none());
    }

    /// A token realm (plain HTTP on 127.0.0.1) answering each GET with `bodies[i]`.
    fn realm(bodies: Vec<&'static str>) -> (crate::transport::tests::FakeServer, Transport) {
        let server = crate::transport::tests::FakeServer::start(move |_| {
            bodies
                .into_iter()
                .map(crate::transport::tests::ok_json)
                .collect()
        });
        let target = crate::target::Target::parse(&server.url("")).expect("target");
        let transport = Transport::new(&target, &Default::default()).expect("transport");
        (server, transport)
    }

    #[test]
    fn short_lived_tokens_are_not_used_past_their_lifetime() {
        let (server, transport) = realm(vec![
            r#"{"token":"first-token","expires_in":1}"#,
            r#"{"token":"second-token","expires_in":1}"#,
        ]);
        let challenge = format!(r#"Bearer realm="{}",service="svc""#, server.url("/token"));
        let auth = Authenticator::new(
            "registry",
            Some(Credential::Basic {
                username: "u".into(),
                password: Secret::new("p"),
            }),
        );
        let scopes = vec!["repository:a/b:pull,push".to_owned()];
        assert_eq!(auth.header_for(&scopes), None, "no scheme learnt yet");
        auth.on_unauthorized(&transport, Some(&challenge), &scopes)
            .expect("token");
        assert_eq!(
            auth.header_for(&scopes).as_deref(),
            Some("Bearer first-token")
        );
        assert_eq!(
            auth.header_for(&["other".to_owned()]),
            None,
            "per scope set"
        );
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(
            auth.header_for(&scopes),
            None,
            "a 1 s token is still used after it expired"
        );
        auth.on_unauthorized(&transport, Some(&challenge), &scopes)
            .expect("refreshed token");
        assert_eq!(
            auth.header_for(&scopes).as_deref(),
            Some("Bearer second-token")
        );
        assert_eq!(auth.token_fetches(), 2);
        let heads = server.heads();
        assert_eq!(heads.len(), 2, "{heads:?}");
        for h in &heads {
            assert!(
                h.starts_with("GET /token?service=svc&scope=repository%3Aa%2Fb%3Apull%2Cpush "),
                "{h}"
            );
            // Basic u:p, sent to the realm only.
            assert_eq!(
                crate::transport::tests::authorization_values(h),
                ["Basic dTpw"],
                "{h}"
            );
        }
    }

    #[test]
    fn long_lived_tokens_are_refreshed_early() {
        let (server, transport) = realm(vec![r#"{"token":"t","expires_in":300}"#]);
        let challenge = format!(r#"Bearer realm="{}""#, server.url("/token"));
        let auth = Authenticator::new("registry", None);
        auth.on_unauthorized(&transport, Some(&challenge), &[])
            .expect("anonymous token");
        let expires = auth.tokens.lock().expect("token cache")[""].1;
        let left = expires.saturating_duration_since(Instant::now());
        assert!(
            left <= Duration::from_secs(270) && left > Duration::from_secs(260),
            "{left:?}"
        );
        assert_eq!(server.heads().len(), 1);
    }

    #[test]
    fn token_responses() {
        let (t, d) =
            parse_token(br#"{"access_token":"abc","expires_in":300}"#.to_vec(), "r").unwrap();
        assert_eq!((t.expose(), d), ("abc", Duration::from_secs(300)));
        let (_, d) = parse_token(br#"{"token":"x"}"#.to_vec(), "r").unwrap();
        assert_eq!(d, Duration::from_secs(60));
        let err = parse_token(br#"{"token":""}"#.to_vec(), "r")
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a token"));
    }
}
