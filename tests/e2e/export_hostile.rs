//! The hostile corpus: every case is refused with exit code 2 and a message
//! naming the offending entry or digest; nothing is written outside the
//! destination and nothing is named in the store. Odd but legitimate
//! packages (sha512 blobs, unknown media types, empty blobs, pax global
//! headers, `./` names) are accepted and their blobs stored byte for byte.

use std::path::Path;

use ferry_e2e::{bin, export, run};
use ferry_testkit::hostile::write_odd_corpus;
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
    assert!(cases.len() >= 30, "corpus has only {} cases", cases.len());

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
        let started = std::time::Instant::now();
        let r = run(std::process::Command::new(bin("ferry-export"))
            .arg("--source")
            .arg(&case.path)
            .arg("--to")
            .arg(&dest)
            .current_dir(&work));
        let took = started.elapsed();
        eprintln!(
            "{}: exit {} in {took:?}: {}",
            case.path.display(),
            r.code,
            r.stderr
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect::<String>()
        );
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
        // Bombs are refused from their headers, not after expanding them.
        if case.name.starts_with("bomb-") {
            assert!(
                took < std::time::Duration::from_secs(5),
                "{} ({}): took {took:?}",
                case.name,
                case.description
            );
            let written: u64 = walk(&dest)
                .iter()
                .filter_map(|p| std::fs::metadata(p).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            assert!(
                written < 1 << 20,
                "{}: {written} bytes written to the store",
                case.name
            );
        }
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

#[test]
fn odd_but_legitimate_packages_are_accepted_and_kept_byte_for_byte() {
    let corpus_dir = tempfile::tempdir().unwrap();
    let cases = write_odd_corpus(corpus_dir.path()).unwrap();
    assert!(cases.len() >= 5, "only {} odd cases", cases.len());
    for case in &cases {
        let dest = corpus_dir.path().join(format!("store-{}", case.name));
        let r = export(&case.path, &dest, &[]);
        assert_eq!(
            r.code, 0,
            "{} ({}): refused: {}",
            case.name, case.description, r.stderr
        );
        let v = run(std::process::Command::new(bin("ferry-verify")).arg(&dest));
        assert_eq!(
            v.code, 0,
            "{} ({}): ferry-verify: {}{}",
            case.name, case.description, v.stdout, v.stderr
        );
        let names = ferry_e2e::assert_store_complete(&dest);
        assert_eq!(names.len(), 1, "{}: {names:?}", case.name);
        let blob = dest
            .join("blobs")
            .join(case.blob.algorithm().name())
            .join(case.blob.hex());
        let stored = std::fs::read(&blob)
            .unwrap_or_else(|e| panic!("{}: {} missing: {e}", case.name, blob.display()));
        assert!(
            stored == case.blob_bytes,
            "{} ({}): {} is not byte-identical",
            case.name,
            case.description,
            blob.display()
        );
        ferry_e2e::assert_all_blobs_verify(&dest);
    }
}
