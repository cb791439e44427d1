//! What the user asked for: `--image REF` values and `--images FILE` lines
//! (one reference per line, `#` comments, blank lines ignored), each checked
//! to be a full reference with its registry host and a tag or digest.
//! ferry-pack never guesses `docker.io`: on the connected side of an air gap
//! a silent default registry is how the wrong image gets packed.

use std::path::Path;

use ferry_store::Reference;

use crate::error::PackError;

/// One image to pack from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What the user wrote, verbatim (trimmed).
    pub requested: String,
    /// It parsed.
    pub reference: Reference,
}

/// Parses one reference; `at` says where it came from (`FILE:LINE`, `--image`).
pub fn parse_reference(text: &str, at: &str) -> Result<Request, PackError> {
    let bad = |why: String| PackError::BadReference {
        at: at.to_owned(),
        why,
    };
    let reference: Reference = text.parse().map_err(|e| bad(format!("{e}")))?;
    let first = text.split('/').next().unwrap_or_default();
    let has_host =
        text.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if !has_host {
        return Err(bad(format!(
            "{text:?} has no registry host: write it in full, e.g. {} (ferry-pack never assumes docker.io)",
            reference
        )));
    }
    if reference.tag.is_none() && reference.digest.is_none() {
        return Err(bad(format!(
            "{text:?} has no tag or digest: write {text}:TAG or {text}@sha256:DIGEST"
        )));
    }
    Ok(Request {
        requested: text.to_owned(),
        reference,
    })
}

/// The references of `--images FILE`: one per line, `#` starts a comment,
/// blank lines are ignored; an error names `FILE:LINE`.
pub fn read_list(path: &Path) -> Result<Vec<Request>, PackError> {
    let text = std::fs::read_to_string(path).map_err(|source| PackError::List {
        path: path.to_path_buf(),
        source,
    })?;
    parse_list(&text, &path.display().to_string())
}

/// [`read_list`] over the text of a list named `name`.
pub fn parse_list(text: &str, name: &str) -> Result<Vec<Request>, PackError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        out.push(parse_reference(line, &format!("{name}:{}", i + 1))?);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_list_skips_comments_and_blanks_and_names_the_bad_line() {
        let list = "# images\n\nreg.example:5000/a/b:1.0  # pinned\n  reg.example/c@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n";
        let got = parse_list(list, "images.txt").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].requested, "reg.example:5000/a/b:1.0");
        assert_eq!(got[0].reference.host, "reg.example:5000");
        assert!(got[1].reference.digest.is_some());

        let err = parse_list("reg.example/a:1\nnginx:1.27\n", "images.txt").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("images.txt:2:"), "{text}");
        assert!(
            text.contains("no registry host") && text.contains("docker.io/library/nginx:1.27"),
            "{text}"
        );
        let err = parse_list("\n\nreg.example/a/b\n", "l").unwrap_err();
        assert!(
            err.to_string().starts_with("l:3:") && err.to_string().contains("no tag or digest"),
            "{err}"
        );
        let err = parse_reference("reg.example/UPPER:1", "--image").unwrap_err();
        assert!(err.to_string().starts_with("--image:"), "{err}");
        assert!(parse_reference("localhost:5000/a:1", "--image").is_ok());
    }
}
