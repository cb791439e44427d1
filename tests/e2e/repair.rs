//! Repairing a store whose blobs rotted at their final paths: the repair line
//! documented in `ferry-verify --help` (and the README) run exactly as written,
//! an export rerun that checks what it reports as present, and `--repair`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_e2e::{assert_all_blobs_verify, bin, export, json, run, Run};
use ferry_store::journal::JournalEntry;
use ferry_store::{Descriptor, Digest};
use ferry_testkit::{generate_layout, write_package, FixtureSpec, PackageFormat, PackageOptions};

/// The store and package paths the documented examples use.
const DOC_STORE: &str = "/media/usb/ferry-store";
const DOC_PACKAGE: &str = "bmpackages_1.30.0.tar.xz";

struct Setup {
    _dir: tempfile::TempDir,
    pkg: PathBuf,
    store: PathBuf,
    layer: Descriptor,
}

/// A package of 2 images exported to a store; `layer` is one of its layers.
fn setup(seed: u64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = FixtureSpec {
        seed,
        images: 2,
        layers_per_image: 2,
        layer_size: 128 * 1024,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let pkg = dir.path().join("pkg.tar");
    write_package(
        &layout,
        PackageFormat::Tar,
        &PackageOptions::default(),
        &pkg,
    )
    .unwrap();
    let store = dir.path().join("store");
    let r = export(&pkg, &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let layer = fixture
        .unique_blobs()
        .into_iter()
        .find(|d| d.media_type.contains("layer"))
        .unwrap();
    Setup {
        _dir: dir,
        pkg,
        store,
        layer,
    }
}

impl Setup {
    fn blob(&self, d: &Descriptor) -> PathBuf {
        self.store.join("blobs/sha256").join(d.digest.hex())
    }

    /// Flips one byte of a blob in place (same size: what bit rot does).
    fn rot(&self, d: &Descriptor) -> Vec<u8> {
        let path = self.blob(d);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        bytes
    }
}

fn verify(store: &Path) -> Run {
    run(Command::new(bin("ferry-verify")).arg(store))
}

/// The line of `text` that starts with `ferry-verify --quarantine`, with its
/// `\` continuations joined (as the shell reads it).
fn repair_line(text: &str) -> Option<String> {
    let mut joined: Vec<String> = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        let part = line.trim();
        let (part, next_continues) = match part.strip_suffix('\\') {
            Some(p) => (p.trim_end(), true),
            None => (part, false),
        };
        match joined.last_mut() {
            Some(last) if continued => {
                last.push(' ');
                last.push_str(part);
            }
            _ => joined.push(part.to_owned()),
        }
        continued = next_continues;
    }
    joined
        .into_iter()
        .find(|l| l.starts_with("ferry-verify --quarantine") && l.contains("ferry-export"))
}

fn documented_repair_line() -> String {
    let help = run(Command::new(bin("ferry-verify")).arg("--help"));
    assert_eq!(help.code, 0, "{}", help.stderr);
    repair_line(&help.stdout)
        .unwrap_or_else(|| panic!("no repair line in ferry-verify --help:\n{}", help.stdout))
}

#[test]
fn documented_repair_line_repairs_a_rotted_store_and_the_readme_shows_it() {
    let s = setup(81);
    s.rot(&s.layer);
    assert_eq!(verify(&s.store).code, 1, "the rot is not found");

    let line = documented_repair_line();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    assert_eq!(
        repair_line(&readme).as_deref(),
        Some(line.as_str()),
        "README shows another repair line than ferry-verify --help"
    );

    let tools = bin("ferry-verify").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let command = line
        .replace(DOC_STORE, &s.store.display().to_string())
        .replace(DOC_PACKAGE, &s.pkg.display().to_string());
    let r = run(Command::new("sh").args(["-c", &command]).env("PATH", path));
    assert_eq!(r.code, 0, "{command}\n{}{}", r.stdout, r.stderr);
    let after = verify(&s.store);
    assert_eq!(after.code, 0, "{}{}", after.stdout, after.stderr);
    assert_all_blobs_verify(&s.store);
}

#[test]
fn export_rerun_replaces_a_rotted_blob_and_names_it() {
    let s = setup(82);
    s.rot(&s.layer);
    let r = export(&s.pkg, &s.store, &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let doc = json(&r);
    let replaced = doc["blobs_replaced"].as_array().unwrap();
    assert_eq!(replaced.len(), 1, "{doc}");
    assert_eq!(replaced[0]["digest"], s.layer.digest.to_string());
    assert_eq!(replaced[0]["found"]["problem"], "digest_mismatch");
    assert_eq!(doc["blobs_written"], 1);
    assert_eq!(verify(&s.store).code, 0);
    assert_all_blobs_verify(&s.store);

    // Human output names it too; a truncated copy is replaced the same way.
    let bytes = std::fs::read(s.blob(&s.layer)).unwrap();
    std::fs::write(s.blob(&s.layer), &bytes[..bytes.len() / 2]).unwrap();
    let r = export(&s.pkg, &s.store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains(&format!("replaced {} from the package", s.layer.digest))
            && r.stdout.contains("SIZE MISMATCH"),
        "{}",
        r.stdout
    );
    assert_eq!(verify(&s.store).code, 0);

    // A sound store: nothing replaced.
    let r = export(&s.pkg, &s.store, &["--json"]);
    assert_eq!(json(&r)["blobs_replaced"].as_array().unwrap().len(), 0);
    assert_eq!(json(&r)["blobs_written"], 0);
}

/// `--repair` trusts no record: a blob whose recorded blake3 matches its
/// (corrupt) bytes passes the cheap check but not the full digest.
#[test]
fn repair_rehashes_what_the_record_would_let_through() {
    let s = setup(83);
    let bad = s.rot(&s.layer);
    // A record that agrees with the corrupt bytes (as if they had been recorded so).
    let forged = JournalEntry::BlobStored {
        digest: s.layer.digest.clone(),
        size: bad.len() as u64,
        blake3: blake3::hash(&bad).to_hex().to_string(),
    };
    let journal = s.store.join(".ferry/journal.jsonl");
    let mut text = std::fs::read_to_string(&journal).unwrap();
    text.push_str(&serde_json::to_string(&forged).unwrap());
    text.push('\n');
    std::fs::write(&journal, text).unwrap();

    let cheap = export(&s.pkg, &s.store, &["--json"]);
    assert_eq!(cheap.code, 0, "{}", cheap.stderr);
    assert_eq!(json(&cheap)["blobs_replaced"].as_array().unwrap().len(), 0);
    assert_eq!(verify(&s.store).code, 1, "the rot is still there");

    let full = export(&s.pkg, &s.store, &["--json", "--repair"]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    let replaced = json(&full)["blobs_replaced"].clone();
    assert_eq!(
        replaced[0]["digest"],
        s.layer.digest.to_string(),
        "{replaced}"
    );
    assert_eq!(replaced.as_array().unwrap().len(), 1);
    assert_eq!(verify(&s.store).code, 0);
    assert_eq!(
        Digest::sha256_of(&std::fs::read(s.blob(&s.layer)).unwrap()),
        s.layer.digest
    );
}
