//! `WWW-Authenticate` parsing (RFC 7235 auth-params, quoted strings with escapes).

use std::collections::BTreeMap;

/// One authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme: `basic` or `bearer`.
    pub scheme: String,
    /// Lowercased parameter names → values (`realm`, `service`, `scope`, `error`).
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value into its challenges (unknown schemes kept).
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && (b[*i] == b' ' || b[*i] == b'\t' || b[*i] == b',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b' ' && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        let token = &header[start..i];
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            // A parameter of the current challenge.
            i = j + 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let value = if i < b.len() && b[i] == b'"' {
                i += 1;
                let mut v = String::new();
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    let ch = header[i..].chars().next().unwrap_or('\u{fffd}');
                    v.push(ch);
                    i += ch.len_utf8();
                }
                i += 1;
                v
            } else {
                let s = i;
                while i < b.len() && b[i] != b',' && b[i] != b' ' {
                    i += 1;
                }
                header[s..i].to_owned()
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let c = parse(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.example/token");
        assert_eq!(c[0].params["scope"], "repository:a/b:pull,push");
        let c = parse(r#"Basic realm="Private \"Registry\"""#);
        assert_eq!(
            (c[0].scheme.as_str(), c[0].params["realm"].as_str()),
            ("basic", "Private \"Registry\"")
        );
        let two = parse(
            r#"Basic realm="x", Bearer realm="https://t", service=svc, error="invalid_token""#,
        );
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].params["service"], "svc");
        assert_eq!(two[1].params["error"], "invalid_token");
    }

    #[test]
    fn garbage_does_not_panic() {
        for g in [
            "",
            "=",
            "Bearer realm=\"unterminated",
            ",,,",
            "Bearer ===",
            "Ünïcode realm=\"ä\"",
        ] {
            let _ = parse(g);
        }
    }
}
