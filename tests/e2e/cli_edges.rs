//! What every tool does at its edges, whatever it is asked: help examples that
//! are safe to paste at any terminal width, help texts that are each tool's
//! own, `ferry help TOOL`, errors that name a path once, and a quiet exit when
//! stdout is a pipe already closed by its reader.

use std::path::Path;
use std::process::{Command, Stdio};

use ferry_e2e::{bin, export, run, without_proxies, Run};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};

const TOOLS: [&str; 6] = [
    "ferry",
    "ferry-export",
    "ferry-verify",
    "ferry-push",
    "ferry-diff",
    "ferry-mirror-config",
];

/// The tools with a `--jobs` option (all but the umbrella and ferry-mirror-config).
const TOOLS_WITH_JOBS: [&str; 4] = ["ferry-export", "ferry-verify", "ferry-push", "ferry-diff"];

fn help(tool: &str, columns: u32) -> String {
    let r = run(Command::new(bin(tool))
        .arg("--help")
        .env("COLUMNS", columns.to_string()));
    assert_eq!(r.code, 0, "{tool} --help: {}", r.stderr);
    r.stdout
}

/// The lines of the `Example:`/`Examples:` block of a help text.
fn example_lines(help: &str) -> Vec<&str> {
    help.lines()
        .skip_while(|l| !l.starts_with("Example"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn help_examples_are_complete_commands_at_every_width() {
    for tool in TOOLS {
        for columns in [60, 100, 200] {
            let text = help(tool, columns);
            let lines = example_lines(&text);
            assert!(!lines.is_empty(), "{tool}: no examples\n{text}");
            let mut continued = false;
            for line in &lines {
                let starts_command = ["ferry", "skopeo", "#"]
                    .iter()
                    .any(|start| line.trim_start().starts_with(start));
                assert!(
                    continued || starts_command,
                    "{tool} at {columns} columns: {line:?} continues a command without `\\`:\n{text}"
                );
                if line.contains("--dry-run") {
                    assert!(
                        line.trim_start().starts_with("ferry"),
                        "{tool} at {columns} columns: --dry-run is not on its command's line: {line:?}"
                    );
                }
                continued = line.trim_end().ends_with('\\');
            }
            assert!(!continued, "{tool}: the last example ends with `\\`");
        }
    }
}

#[test]
fn shared_options_are_described_for_each_tool() {
    let option_help = |tool: &str, option: &str| -> String {
        let text = help(tool, 200);
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(option))
            .unwrap_or_else(|| panic!("{tool}: no {option}\n{text}"));
        line.trim_start()[option.len()..].trim().to_owned()
    };
    let jobs: Vec<String> = TOOLS_WITH_JOBS
        .iter()
        .map(|t| option_help(t, "--jobs <N>"))
        .collect();
    for (i, a) in jobs.iter().enumerate() {
        for b in &jobs[i + 1..] {
            assert_ne!(a, b, "two tools share the same --jobs help");
        }
    }
    assert!(
        !jobs[0].contains("push") && !jobs[0].contains("diff"),
        "ferry-export's --jobs help talks about other tools: {}",
        jobs[0]
    );
    assert!(option_help("ferry-push", "--json").contains("JSON lines"));
    for tool in ["ferry-export", "ferry-verify", "ferry-diff"] {
        assert!(option_help(tool, "--json").contains("one JSON document"));
    }
}

#[test]
fn ferry_help_tool_prints_that_tools_help() {
    for (name, tool) in [("export", "ferry-export"), ("verify", "ferry-verify")] {
        let umbrella = run(Command::new(bin("ferry")).args(["help", name]));
        assert_eq!(umbrella.code, 0, "{}", umbrella.stderr);
        assert_eq!(
            umbrella.stdout,
            run(Command::new(bin(tool)).arg("--help")).stdout
        );
    }
    let r = run(Command::new(bin("ferry")).arg("help"));
    assert!(r.stdout.contains("Installed tools:"), "{}", r.stdout);
}

#[test]
fn an_error_names_its_path_once() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("README.md");
    std::fs::write(&notes, "# not a package\n").unwrap();
    let r = export(&notes, &dir.path().join("store"), &[]);
    assert_eq!(r.code, 2);
    let shown = notes.display().to_string();
    assert_eq!(r.stderr.matches(&shown).count(), 1, "{}", r.stderr);
    let r = run(Command::new(bin("ferry-verify")).arg(&notes));
    assert_eq!(r.code, 2);
    assert_eq!(r.stderr.matches(&shown).count(), 1, "{}", r.stderr);
}

/// Runs `cmd` with stdout a pipe whose read end is already closed: every
/// write to it fails with EPIPE.
fn with_closed_stdout(cmd: &mut Command) -> Run {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
        .into()
}

#[test]
fn writing_to_a_closed_pipe_ends_quietly_for_every_tool() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = ferry_e2e::registry_push::package(91, 64 * 1024);
    let store = dir.path().join("store");
    let mut runs: Vec<(String, Run)> = Vec::new();
    let mut check =
        |what: &str, cmd: &mut Command| runs.push((what.into(), with_closed_stdout(cmd)));
    check(
        "ferry-export --json",
        Command::new(bin("ferry-export"))
            .arg("--source")
            .arg(&pkg.path)
            .arg("--to")
            .arg(&store)
            .arg("--json"),
    );
    check(
        "ferry-verify --json",
        Command::new(bin("ferry-verify")).arg("--json").arg(&store),
    );
    check(
        "ferry-verify",
        Command::new(bin("ferry-verify")).arg(&store),
    );
    for tool in TOOLS {
        check(
            &format!("{tool} --help"),
            Command::new(bin(tool)).arg("--help"),
        );
    }
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let target = format!("http://{}/ns", reg.host());
    for (tool, extra) in [
        ("ferry-push", &["--json", "--dry-run"][..]),
        ("ferry-push", &[][..]),
        ("ferry-diff", &["--json"][..]),
        ("ferry-diff", &[][..]),
    ] {
        check(
            &format!("{tool} {extra:?}"),
            without_proxies(
                Command::new(bin(tool))
                    .arg("--source")
                    .arg(&store)
                    .args(["--private-registry", &target, "--need-credential=false"])
                    .args(extra),
            ),
        );
    }
    for (what, r) in &runs {
        assert!(
            !r.stderr.contains("panicked") && !r.stderr.contains("Broken pipe"),
            "{what}: {}",
            r.stderr
        );
        assert_eq!(r.code, 0, "{what}: {}", r.stderr);
    }
    assert!(Path::new(&store).join("index.json").is_file());
}
