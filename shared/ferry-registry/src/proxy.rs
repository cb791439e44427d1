//! Proxy selection from the environment, as curl does it.
//!
//! `https_proxy`/`HTTPS_PROXY` for https URLs, `http_proxy` (lowercase only,
//! like curl) for http URLs, `all_proxy`/`ALL_PROXY` as a fallback, and
//! `no_proxy`/`NO_PROXY` (comma-separated host suffixes, IPs, `*`, optional
//! `:port`) to bypass.

/// The proxy URL to use for `scheme://host:port`, or `None` to connect directly.
pub fn proxy_for(
    scheme: &str,
    host: &str,
    port: u16,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
    };
    let no_proxy = get(&["no_proxy", "NO_PROXY"]).unwrap_or_default();
    if bypass(&no_proxy, host, port) {
        return None;
    }
    let proxy = match scheme {
        "https" => get(&["https_proxy", "HTTPS_PROXY"]),
        _ => get(&["http_proxy"]),
    }
    .or_else(|| get(&["all_proxy", "ALL_PROXY"]))?;
    Some(if proxy.contains("://") {
        proxy
    } else {
        format!("http://{proxy}")
    })
}

fn bypass(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = match entry.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') || n.ends_with(']') => (n, p.parse::<u16>().ok()),
                _ => (entry, None),
            };
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_start_matches('*')
                .to_ascii_lowercase();
            let name = name.trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn picks_scheme_specific_proxy() {
        let e = env(&[
            ("HTTPS_PROXY", "proxy.local:3128"),
            ("http_proxy", "http://p2:8080"),
        ]);
        assert_eq!(
            proxy_for("https", "reg.example", 5000, &e).as_deref(),
            Some("http://proxy.local:3128")
        );
        assert_eq!(
            proxy_for("http", "reg.example", 5000, &e).as_deref(),
            Some("http://p2:8080")
        );
        // curl ignores uppercase HTTP_PROXY.
        let e = env(&[("HTTP_PROXY", "http://p3:1")]);
        assert_eq!(proxy_for("http", "reg.example", 80, &e), None);
        let e = env(&[("ALL_PROXY", "http://all:1")]);
        assert_eq!(
            proxy_for("https", "x", 443, &e).as_deref(),
            Some("http://all:1")
        );
    }

    #[test]
    fn no_proxy_rules() {
        let e = env(&[
            ("https_proxy", "http://p:1"),
            ("NO_PROXY", "example.com, 10.0.0.5 ,.internal,other:5000"),
        ]);
        assert_eq!(proxy_for("https", "reg.example.com", 443, &e), None);
        assert_eq!(proxy_for("https", "example.com", 443, &e), None);
        assert_eq!(proxy_for("https", "10.0.0.5", 5000, &e), None);
        assert_eq!(proxy_for("https", "a.internal", 443, &e), None);
        assert_eq!(proxy_for("https", "other", 5000, &e), None);
        assert!(proxy_for("https", "other", 5001, &e).is_some());
        assert!(proxy_for("https", "notexample.com", 443, &e).is_some());
        let star = env(&[("https_proxy", "http://p:1"), ("no_proxy", "*")]);
        assert_eq!(proxy_for("https", "anything", 1, &star), None);
    }
}
