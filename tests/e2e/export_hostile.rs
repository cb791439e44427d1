//! The hostile corpus: every case is refused with exit code 2 and a message
//! naming the offending entry or digest; nothing is written outside the
//! destination and nothing is named in the store.

use std::path::Path;

use ferry_e2e::{bin, export, run};
use ferry_testkit::write_hostile_corpus;

fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            v.push(p.clone());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                v.extend(walk(&p));
            }
        }
    }
    v
}

#[test]
fn every_hostile_package_is_refused_with_exit_2_and_a_precise_message() {
    let corpus_dir = tempfile::tempdir().unwrap();
    let cases = write_hostile_corpus(corpus_dir.path()).unwrap();
    assert!(cases.len() >= 12, "corpus has only {} cases", cases.len());

    // The control package is accepted, so refusals below are about the breakage.
    let control = corpus_dir
        .path()
        .join(ferry_testkit::hostile::VALID_PACKAGE);
    let ok = export(&control, &corpus_dir.path().join("control-store"), &[]);
    assert_eq!(ok.code, 0, "control package refused: {}", ok.stderr);

    for case in &cases {
        // sandbox/work is the export's working directory, sandbox/dest its destination,
        // sandbox/canary a sibling that must stay empty.
        let sandbox = tempfile::tempdir().unwrap();
        let work = sandbox.path().join("work/deeper");
        let canary = sandbox.path().join("canary");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&canary).unwrap();
        let dest = sandbox.path().join("dest");
        let r = run(std::process::Command::new(bin("ferry-export"))
            .arg("--source")
            .arg(&case.path)
            .arg("--to")
            .arg(&dest)
            .current_dir(&work));
        assert_eq!(
            r.code, 2,
            "{} ({}): expected exit 2, got {}\n{}",
            case.name, case.description, r.code, r.stderr
        );
        assert!(
            r.stderr.contains(&case.must_mention),
            "{} ({}): message does not mention {:?}:\n{}",
            case.name,
            case.description,
            case.must_mention,
            r.stderr
        );
        assert!(
            tree(&canary).is_empty(),
            "{}: canary touched: {:?}",
            case.name,
            tree(&canary)
        );
        assert!(
            tree(&work).is_empty(),
            "{}: files written in the working dir: {:?}",
            case.name,
            tree(&work)
        );
        let top: Vec<String> = tree(sandbox.path())
            .into_iter()
            .filter(|p| !p.contains('/'))
            .collect();
        assert_eq!(
            top,
            vec!["canary", "dest", "work"],
            "{}: wrote outside the destination",
            case.name
        );
        // Nothing is named in the store of a refused package.
        if let Ok(index) = std::fs::read(dest.join("index.json")) {
            let v: serde_json::Value = serde_json::from_slice(&index).unwrap();
            assert_eq!(
                v["manifests"].as_array().map(Vec::len),
                Some(0),
                "{}: image named",
                case.name
            );
        }
    }
}
