//! The command lines as installed: `--version` names the commit, `ferry push
//! images` is `ferry push`, the completion scripts complete every flag in the
//! real shells, and the man pages document every flag `--help` shows.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use ferry_e2e::registry_push::{assert_registry_has_package, package, run_against};
use ferry_e2e::{bin, run, Run};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};

/// The umbrella and every tool it runs (what the packages install).
const COMMANDS: [&str; 7] = [
    "ferry",
    "ferry-export",
    "ferry-verify",
    "ferry-diff",
    "ferry-push",
    "ferry-pack",
    "ferry-mirror-config",
];

fn ok(cmd: &mut Command) -> Run {
    let r = run(cmd);
    assert_eq!(r.code, 0, "{cmd:?}: {}\n{}", r.stderr, r.stdout);
    r
}

/// The long flags (`--name`) a tool's `--help` lists, without `--help`/`--version`.
fn help_flags(tool: &str) -> BTreeSet<String> {
    let help = ok(Command::new(bin(tool)).arg("--help")).stdout;
    let flags: BTreeSet<String> = help
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with('-'))
        .filter_map(|line| {
            let at = line.find("--")?;
            let name: String = line[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{name}"))
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect();
    assert!(!flags.is_empty(), "{tool}: no flags found in\n{help}");
    flags
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn every_version_names_the_commit_it_was_built_from() {
    let mut commits = BTreeSet::new();
    for name in COMMANDS {
        let out = ok(Command::new(bin(name)).arg("--version")).stdout;
        let prefix = format!("{name} {} (", env!("CARGO_PKG_VERSION"));
        let commit = out
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(")\n"))
            .unwrap_or_else(|| panic!("{name} --version: {out:?}, expected {prefix}COMMIT)"));
        commits.insert(commit.to_owned());
    }
    assert_eq!(commits.len(), 1, "the tools disagree: {commits:?}");
    let commit = commits.pop_first().expect("one commit");
    let hash = commit.strip_suffix("-dirty").unwrap_or(&commit);
    if git(&["rev-parse", "--git-dir"]).is_some() {
        assert!(
            hash.len() >= 7 && hash.chars().all(|c| c.is_ascii_hexdigit()),
            "{commit:?} is not a short commit hash"
        );
        assert_eq!(
            git(&["cat-file", "-t", hash]).as_deref(),
            Some("commit"),
            "{hash} is not a commit of this repository"
        );
    } else {
        assert_eq!(commit, "unknown", "built outside a git checkout");
    }
}

#[test]
fn push_images_as_bmctl_spells_it_pushes_like_push() {
    let pkg = package(171, 64 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd))
        .expect("start the registry");
    let mut ferry = Command::new(bin("ferry"));
    ferry.args(["push", "images"]);
    let r = run_against(ferry, &reg, &pkg.path, "bmctl", &[], &[], true);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_registry_has_package(&reg, "bmctl", &pkg);
}

/// Sources `script` in bash and completes `words` (the last one being typed);
/// returns the candidates.
fn bash_complete(script: &Path, words: &[&str]) -> BTreeSet<String> {
    let program = r#"
        source "$1"; shift
        COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
        COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        spec=$(complete -p "$1") || exit 3
        fn=${spec#*-F }; fn=${fn%% *}
        "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let r = ok(Command::new("bash")
        .args(["-c", program, "complete"])
        .arg(script)
        .args(words));
    r.stdout.split_whitespace().map(str::to_owned).collect()
}

fn completion_script(dir: &Path, shell: &str, command: &str) -> std::path::PathBuf {
    let script = ok(Command::new(bin("ferry")).args(["completions", shell, command])).stdout;
    assert!(!script.is_empty(), "{shell} {command}: empty script");
    let path = dir.join(format!("{command}.{shell}"));
    std::fs::write(&path, script).expect("write the script");
    path
}

#[test]
fn bash_completes_every_flag_of_every_tool() {
    let dir = tempfile::tempdir().expect("temp dir");
    for tool in &COMMANDS[1..] {
        let script = completion_script(dir.path(), "bash", tool);
        let got = bash_complete(&script, &[tool, "--"]);
        let missing: Vec<_> = help_flags(tool).difference(&got).cloned().collect();
        assert!(missing.is_empty(), "{tool}: not completed: {missing:?}");
    }
    let script = completion_script(dir.path(), "bash", "ferry");
    let tools = bash_complete(&script, &["ferry", ""]);
    for sub in [
        "export",
        "verify",
        "diff",
        "push",
        "mirror-config",
        "completions",
    ] {
        assert!(tools.contains(sub), "ferry <TAB>: {tools:?}");
    }
    for words in [
        &["ferry", "push", "--"][..],
        &["ferry", "push", "images", "--"],
    ] {
        let got = bash_complete(&script, words);
        let missing: Vec<_> = help_flags("ferry-push").difference(&got).cloned().collect();
        assert!(missing.is_empty(), "{words:?}: not completed: {missing:?}");
    }
}

#[test]
fn fish_and_zsh_scripts_complete_in_their_shells() {
    let dir = tempfile::tempdir().expect("temp dir");
    for command in COMMANDS {
        let fish = completion_script(dir.path(), "fish", command);
        let words = if command == "ferry" {
            "ferry push images --"
        } else {
            &format!("{command} --")
        };
        let out = ok(Command::new("fish")
            .args(["--no-config", "-c", "source $argv[1]; complete -C $argv[2]"])
            .arg(&fish)
            .arg(words))
        .stdout;
        let got: BTreeSet<String> = out
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_owned)
            .collect();
        let tool = if command == "ferry" {
            "ferry-push"
        } else {
            command
        };
        let missing: Vec<_> = help_flags(tool).difference(&got).cloned().collect();
        assert!(
            missing.is_empty(),
            "fish {words}: not completed: {missing:?}"
        );

        let zsh = completion_script(dir.path(), "zsh", command);
        let text = std::fs::read_to_string(&zsh).expect("read the zsh script");
        assert!(
            text.starts_with(&format!("#compdef {command}\n")),
            "zsh {command}: {}",
            &text[..text.len().min(200)]
        );
        for flag in help_flags(tool) {
            assert!(text.contains(&flag), "zsh {command}: no {flag}");
        }
        ok(Command::new("zsh").arg("-n").arg(&zsh));
    }
}

/// `page` as `man` shows it, wide enough that nothing is wrapped or hyphenated.
fn man_text(page: &Path) -> String {
    ok(Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "1000")
        .env_remove("MANPAGER")
        .env_remove("PAGER"))
    .stdout
}

#[test]
fn man_pages_document_every_flag_and_the_exit_codes_of_help() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = ok(Command::new(bin("ferry"))
        .arg("generate-man")
        .arg(dir.path()))
    .stdout;
    for tool in &COMMANDS[1..] {
        let page = dir.path().join(format!("{tool}.1"));
        assert!(written.contains(&page.display().to_string()), "{written}");
        let text = man_text(&page);
        for flag in help_flags(tool) {
            assert!(text.contains(&flag), "{tool}.1 lacks {flag}:\n{text}");
        }
        let help = ok(Command::new(bin(tool)).arg("--help")).stdout;
        let codes = help
            .split_once("Exit codes:")
            .unwrap_or_else(|| panic!("{tool} --help has no exit codes"))
            .1;
        for line in codes.lines().map(str::trim).filter(|l| !l.is_empty()) {
            assert!(text.contains(line), "{tool}.1 lacks {line:?}");
        }
        let version = ok(Command::new(bin(tool)).arg("--version")).stdout;
        let version = version
            .trim()
            .strip_prefix(&format!("{tool} "))
            .expect("NAME VERSION");
        assert!(text.contains(version), "{tool}.1 has not version {version}");
    }
    let umbrella = man_text(&dir.path().join("ferry.1"));
    for page in [
        "ferry-export",
        "ferry-verify",
        "ferry-diff",
        "ferry-push",
        "ferry-pack",
        "ferry-mirror-config",
        "ferry-completions",
    ] {
        assert!(umbrella.contains(page), "ferry.1 does not name {page}");
        assert!(dir.path().join(format!("{page}.1")).is_file(), "{page}.1");
    }
}
