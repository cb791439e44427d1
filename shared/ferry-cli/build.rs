//! Records the git commit the tools are built from, for `--version`:
//! `FERRY_GIT_COMMIT` is `git rev-parse --short HEAD`, with `-dirty` when the
//! tracked sources (`shared/`, `tools/`, `Cargo.toml`, `Cargo.lock`) differ from
//! that commit; `unknown` outside a git checkout (a build from a source
//! tarball), unless the builder sets `FERRY_GIT_COMMIT` itself.

use std::path::Path;
use std::process::Command;

/// What the binaries are built from, relative to the top of the checkout.
const SOURCES: [&str; 4] = ["shared", "tools", "Cargo.toml", "Cargo.lock"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FERRY_GIT_COMMIT");
    let commit = match std::env::var("FERRY_GIT_COMMIT") {
        Ok(given) if !given.is_empty() => given,
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=FERRY_GIT_COMMIT={commit}");
}

/// `git ARGS` in this crate's directory, its trimmed stdout if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR")?)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Asks cargo to run this script again when `path` changes (only if it exists:
/// cargo reruns on every build for a path that does not).
fn watch(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn from_git() -> Option<String> {
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    // A new commit or a checkout moves HEAD or the branch it names (loose or packed);
    // `--git-path` resolves both in a linked worktree too.
    watch(&git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "HEAD",
    ])?);
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&git(&[
            "rev-parse",
            "--path-format=absolute",
            "--git-path",
            &branch,
        ])?);
    }
    watch(&git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "packed-refs",
    ])?);
    // An edited source file of the binaries makes the build dirty: watch them all.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    for path in SOURCES {
        watch(&format!("{top}/{path}"));
    }
    // Exit status 1: those sources differ from HEAD (anything else: cannot tell).
    let dirty = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--"])
        .args(SOURCES)
        .current_dir(top)
        .status()
        .ok()?
        .code()
        == Some(1);
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
