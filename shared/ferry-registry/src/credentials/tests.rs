//! Unit tests for credential resolution: temp dirs for config files and fake helper scripts on a
//! temp `PATH`.
#![allow(clippy::unwrap_used)]

use super::*;
use base64::Engine as _;
use std::collections::VecDeque;
use std::fs;
use std::time::Instant;

const PW: &str = "hunter2-s3cret";
const REG: &str = "127.0.0.1:5000";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("home")).unwrap();
        fs::create_dir_all(dir.path().join("bin")).unwrap();
        Fixture { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.root().join("home")
    }

    fn bin(&self) -> PathBuf {
        self.root().join("bin")
    }

    /// Only HOME and a PATH of the temp bin dir plus the system dirs (for `sleep` in scripts).
    fn env(&self) -> Env {
        let path = std::env::join_paths([self.bin(), "/usr/bin".into(), "/bin".into()]).unwrap();
        Env {
            home: Some(self.home()),
            path: Some(path),
            ..Env::default()
        }
    }

    fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.root().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, contents).unwrap();
        p
    }

    fn home_docker_config(&self, contents: &str) -> PathBuf {
        self.write("home/.docker/config.json", contents)
    }

    /// A fake `docker-credential-<suffix>` running `body` under /bin/sh.
    fn helper(&self, suffix: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let p = self.bin().join(format!("docker-credential-{suffix}"));
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn basic(u: &str, p: &str) -> Credential {
    Credential::Basic {
        username: u.into(),
        password: Secret::new(p),
    }
}

fn noninteractive() -> CredentialOptions {
    CredentialOptions::default()
}

/// A prompter that answers from a script and fails if asked more.
#[derive(Default)]
struct FakePrompter {
    answers: VecDeque<String>,
    prompts: Vec<String>,
}

impl FakePrompter {
    fn with(answers: &[&str]) -> FakePrompter {
        FakePrompter {
            answers: answers.iter().map(|s| s.to_string()).collect(),
            prompts: vec![],
        }
    }
    fn next(&mut self, prompt: &str) -> io::Result<String> {
        self.prompts.push(prompt.to_string());
        self.answers
            .pop_front()
            .ok_or_else(|| io::Error::other("unexpected prompt"))
    }
}

impl Prompter for FakePrompter {
    fn username(&mut self, prompt: &str) -> io::Result<String> {
        self.next(prompt)
    }
    fn password(&mut self, prompt: &str) -> io::Result<String> {
        self.next(prompt)
    }
}

fn run(reg: &str, opts: &CredentialOptions, env: &Env) -> Result<Found, CredentialError> {
    run_with(reg, opts, env, &mut FakePrompter::default())
}

fn run_with(
    reg: &str,
    opts: &CredentialOptions,
    env: &Env,
    p: &mut FakePrompter,
) -> Result<Found, CredentialError> {
    let r = resolve_with(reg, opts, env, p, Duration::from_secs(10));
    assert_no_secret(&r);
    r
}

/// Every rendering of a result must be free of the test password.
fn assert_no_secret(r: &Result<Found, CredentialError>) {
    let texts = match r {
        Ok((c, s)) => vec![
            format!("{c:?}"),
            format!("{s:?}"),
            format!("{s}"),
            format!("{r:?}"),
        ],
        Err(e) => vec![format!("{e:?}"), format!("{e}"), format!("{r:?}")],
    };
    for t in texts {
        assert!(!t.contains(PW), "secret leaked in: {t}");
        assert!(
            !t.contains(&b64(&format!("alice:{PW}"))),
            "base64 secret leaked in: {t}"
        );
    }
}

// ---- flags ------------------------------------------------------------------------------------

#[test]
fn flags_win_over_config() {
    let f = Fixture::new();
    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
        b64("bob:other")
    ));
    let opts = CredentialOptions {
        username: Some("alice".into()),
        password: Some(Secret::new(PW)),
        ..noninteractive()
    };
    let (c, s) = run(REG, &opts, &f.env()).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(s, CredentialSource::Flags);
}

#[test]
fn username_without_password_off_a_tty_is_an_error() {
    let f = Fixture::new();
    let opts = CredentialOptions {
        username: Some("alice".into()),
        ..noninteractive()
    };
    let e = run(REG, &opts, &f.env()).unwrap_err();
    assert!(matches!(e, CredentialError::MissingPassword { ref username } if username == "alice"));
    assert!(e.to_string().contains("--password-stdin"), "{e}");
}

#[test]
fn username_without_password_on_a_tty_prompts_for_the_password() {
    let f = Fixture::new();
    let opts = CredentialOptions {
        username: Some("alice".into()),
        interactive: true,
        ..noninteractive()
    };
    let mut p = FakePrompter::with(&[PW]);
    let (c, s) = run_with(REG, &opts, &f.env(), &mut p).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(s, CredentialSource::Prompt);
    assert_eq!(p.prompts, vec![format!("Password for alice@{REG}: ")]);
}

#[test]
fn password_without_username_off_a_tty_is_an_error() {
    let f = Fixture::new();
    let opts = CredentialOptions {
        password: Some(Secret::new(PW)),
        ..noninteractive()
    };
    let e = run(REG, &opts, &f.env()).unwrap_err();
    assert!(matches!(e, CredentialError::MissingUsername), "{e:?}");
}

// ---- docker config.json -----------------------------------------------------------------------

#[test]
fn config_auth_base64() {
    let f = Fixture::new();
    let path = f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
        b64(&format!("alice:{PW}"))
    ));
    let (c, s) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(s, CredentialSource::DockerConfig(path));
}

#[test]
fn config_auth_splits_at_first_colon_and_trims_nuls() {
    let f = Fixture::new();
    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
        b64(&format!("alice:{PW}:x\0\0"))
    ));
    let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("alice", &format!("{PW}:x")));
}

#[test]
fn config_username_password_fields() {
    let f = Fixture::new();
    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"username":"alice","password":"{PW}"}}}}}}"#
    ));
    let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("alice", PW));
}

#[test]
fn config_identitytoken() {
    let f = Fixture::new();
    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"username":"alice","identitytoken":"{PW}"}}}}}}"#
    ));
    let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(
        c,
        Credential::IdentityToken {
            username: "alice".into(),
            token: Secret::new(PW)
        }
    );
}

#[test]
fn config_key_normalisation() {
    for key in [
        "https://127.0.0.1:5000/v1/",
        "http://127.0.0.1:5000",
        "https://127.0.0.1:5000",
        "127.0.0.1:5000/v2/",
    ] {
        let f = Fixture::new();
        f.home_docker_config(&format!(
            r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("alice:{PW}"))
        ));
        let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(c, basic("alice", PW), "{key}");
    }
}

#[test]
fn config_port_matters_and_exact_key_wins() {
    let f = Fixture::new();
    f.home_docker_config(&format!(
        r#"{{"auths":{{"127.0.0.1":{{"auth":"{}"}},"https://127.0.0.1:5000/v1/":{{"auth":"{}"}},"{REG}":{{"auth":"{}"}}}}}}"#,
        b64("wrongport:x"),
        b64("legacy:x"),
        b64(&format!("alice:{PW}"))
    ));
    let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("alice", PW));

    let f = Fixture::new();
    f.home_docker_config(&format!(
        r#"{{"auths":{{"127.0.0.1":{{"auth":"{}"}}}}}}"#,
        b64("a:b")
    ));
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(matches!(e, CredentialError::NotFound { .. }), "{e:?}");
}

#[test]
fn config_malformed_is_bad_config_without_contents() {
    let f = Fixture::new();
    let path = f.home_docker_config(&format!(r#"{{"auths":{{"{REG}":{{"password":"{PW}", "#));
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(
        matches!(e, CredentialError::BadConfig { path: ref p, .. } if *p == path),
        "{e:?}"
    );

    // A wrongly typed value: serde's own message would quote it; ours must not.
    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"username":["{PW}"]}}}}, "credsStore": 5}}"#
    ));
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(matches!(e, CredentialError::BadConfig { .. }), "{e:?}");

    f.home_docker_config(&format!(r#"{{"auths":{{"{REG}":{{"auth":"{PW}!!"}}}}}}"#));
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(e.to_string().contains("base64"), "{e}");
}

#[test]
fn docker_config_flag_beats_docker_config_env_which_beats_home() {
    let f = Fixture::new();
    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
        b64("home:x")
    ));
    let env_cfg = f.write(
        "envdir/config.json",
        &format!(
            r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
            b64("envdir:x")
        ),
    );
    let flag_cfg = f.write(
        "elsewhere/my-config.json",
        &format!(
            r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("alice:{PW}"))
        ),
    );
    let mut env = f.env();
    env.docker_config = Some(f.root().join("envdir"));

    let opts = CredentialOptions {
        docker_config: Some(flag_cfg.clone()),
        ..noninteractive()
    };
    let (c, s) = run(REG, &opts, &env).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(s, CredentialSource::DockerConfig(flag_cfg));

    let (c, s) = run(REG, &noninteractive(), &env).unwrap();
    assert_eq!(c, basic("envdir", "x"));
    assert_eq!(s, CredentialSource::DockerConfig(env_cfg));

    let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("home", "x"));
}

#[test]
fn docker_config_flag_missing_file_is_an_error() {
    let f = Fixture::new();
    let missing = f.root().join("nope.json");
    let opts = CredentialOptions {
        docker_config: Some(missing.clone()),
        ..noninteractive()
    };
    let e = run(REG, &opts, &f.env()).unwrap_err();
    assert!(
        matches!(e, CredentialError::BadConfig { ref path, .. } if *path == missing),
        "{e:?}"
    );
}

// ---- credential helpers -----------------------------------------------------------------------

#[test]
fn cred_helpers_win_over_auths() {
    let f = Fixture::new();
    let cfg = f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}},"credsStore":"other","credHelpers":{{"{REG}":"test"}}}}"#,
        b64("file:x")
    ));
    f.helper("test", &format!(r#"read -r url; printf '{{"ServerURL":"%s","Username":"alice","Secret":"{PW}"}}' "$url""#));
    let (c, s) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(
        s,
        CredentialSource::CredHelper {
            helper: "docker-credential-test".into(),
            config: cfg.clone()
        }
    );
    assert_eq!(
        s.to_string(),
        format!(
            "credential helper docker-credential-test (configured in {})",
            cfg.display()
        )
    );
}

#[test]
fn creds_store_is_used_for_every_registry() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"auths":{"127.0.0.1:5000":{}},"credsStore":"store"}"#);
    // The helper must get exactly the registry string on stdin.
    f.helper(
        "store",
        &format!(
            r#"read -r url
if [ "$url" = "{REG}" ]; then printf '{{"ServerURL":"%s","Username":"alice","Secret":"{PW}"}}' "$url"; exit 0; fi
echo "credentials not found in native keychain"; exit 1"#
        ),
    );
    let (c, s) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert!(
        matches!(s, CredentialSource::CredHelper { ref helper, .. } if helper == "docker-credential-store")
    );
}

#[test]
fn helper_not_found_retries_with_https_prefix() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"credsStore":"store"}"#);
    f.helper(
        "store",
        &format!(
            r#"read -r url
if [ "$url" = "https://{REG}" ]; then printf '{{"ServerURL":"%s","Username":"alice","Secret":"{PW}"}}' "$url"; exit 0; fi
echo "credentials not found in native keychain"; exit 1"#
        ),
    );
    let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("alice", PW));
}

#[test]
fn helper_with_nothing_falls_through_and_is_listed() {
    let f = Fixture::new();
    let cfg = f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}},"credsStore":"store"}}"#,
        b64("inline:x")
    ));
    f.helper(
        "store",
        "echo 'credentials not found in native keychain'; exit 1",
    );
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    let CredentialError::NotFound { tried, .. } = &e else {
        panic!("{e:?}")
    };
    let msg = e.to_string();
    assert!(msg.contains("docker-credential-store"), "{msg}");
    assert!(msg.contains(&cfg.display().to_string()), "{msg}");
    assert!(
        tried
            .iter()
            .any(|t| t.contains("ignored because credsStore is set")),
        "{tried:?}"
    );
}

#[test]
fn missing_helper_names_the_helper() {
    let f = Fixture::new();
    let cfg = f.home_docker_config(&format!(r#"{{"credHelpers":{{"{REG}":"nope"}}}}"#));
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(
        matches!(e, CredentialError::HelperMissing { ref helper, .. } if helper == "docker-credential-nope"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "credential helper docker-credential-nope (configured in {} for {REG}) is not on PATH",
            cfg.display()
        )
    );
}

#[test]
fn failing_helper_is_helper_failed() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"credsStore":"broken"}"#);
    f.helper(
        "broken",
        "echo 'gpg: decryption failed: No secret key' >&2; exit 2",
    );
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    let CredentialError::HelperFailed { helper, stderr, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(helper, "docker-credential-broken");
    assert_eq!(stderr, "gpg: decryption failed: No secret key");
    assert!(e.to_string().contains("docker-credential-broken"));
}

#[test]
fn failing_helper_message_is_trimmed_and_never_echoes_json_stdout() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"credsStore":"broken"}"#);
    f.helper(
        "broken",
        &format!(r#"printf '{{"Username":"alice","Secret":"{PW}"}}'; exit 1"#),
    );
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(matches!(e, CredentialError::HelperFailed { .. }), "{e:?}");

    f.helper(
        "broken",
        "i=0; while [ $i -lt 100 ]; do printf 'error '; i=$((i+1)); done; exit 1",
    );
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    let CredentialError::HelperFailed { stderr, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(stderr.chars().count(), 300);
}

#[test]
fn helper_token_user_means_identity_token() {
    let f = Fixture::new();
    f.home_docker_config(&format!(r#"{{"credHelpers":{{"{REG}":"tok"}}}}"#));
    f.helper(
        "tok",
        &format!(r#"printf '{{"ServerURL":"x","Username":"<token>","Secret":"{PW}"}}'"#),
    );
    let (c, _) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(
        c,
        Credential::IdentityToken {
            username: String::new(),
            token: Secret::new(PW)
        }
    );
}

#[test]
fn helper_runs_with_env_path() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"credsStore":"path"}"#);
    f.helper("path", r#"printf '{"Username":"%s","Secret":"x"}' "$PATH""#);
    let env = f.env();
    let (c, _) = run(REG, &noninteractive(), &env).unwrap();
    assert_eq!(c.username(), env.path.as_ref().unwrap().to_str().unwrap());
}

#[test]
fn helper_bad_output() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"credsStore":"junk"}"#);
    f.helper("junk", &format!("echo 'Secret={PW}'"));
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(
        matches!(e, CredentialError::HelperBadOutput { .. }),
        "{e:?}"
    );
}

#[test]
fn slow_helper_is_killed() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"credsStore":"slow"}"#);
    // `sleep` is a grandchild holding stdout open: resolution must not wait for it.
    f.helper("slow", "sleep 5; echo '{}'");
    let start = Instant::now();
    let r = resolve_with(
        REG,
        &noninteractive(),
        &f.env(),
        &mut FakePrompter::default(),
        Duration::from_millis(300),
    );
    let e = r.unwrap_err();
    assert!(matches!(e, CredentialError::HelperTimeout { .. }), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn invalid_helper_name_is_bad_config() {
    let f = Fixture::new();
    f.home_docker_config(r#"{"credsStore":"../../bin/sh"}"#);
    let e = run(REG, &noninteractive(), &f.env()).unwrap_err();
    assert!(matches!(e, CredentialError::BadConfig { .. }), "{e:?}");
}

// ---- containers auth.json ---------------------------------------------------------------------

#[test]
fn registry_auth_file_with_namespace_keys() {
    let f = Fixture::new();
    let path = f.write(
        "auth/custom.json",
        &format!(
            r#"{{"auths":{{"{REG}/team":{{"auth":"{}"}},"{REG}/team/app":{{"auth":"{}"}},"{REG}":{{"auth":"{}"}}}}}}"#,
            b64("team:x"),
            b64(&format!("alice:{PW}")),
            b64("host:x")
        ),
    );
    // Also an XDG file that must be ignored when REGISTRY_AUTH_FILE is set.
    f.write(
        "xdg/containers/auth.json",
        &format!(r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#, b64("xdg:x")),
    );
    let mut env = f.env();
    env.registry_auth_file = Some(path.clone());
    env.xdg_runtime_dir = Some(f.root().join("xdg"));

    let (c, s) = run(&format!("{REG}/team/app"), &noninteractive(), &env).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(s, CredentialSource::AuthJson(path.clone()));
    assert_eq!(
        run(&format!("{REG}/team/other"), &noninteractive(), &env)
            .unwrap()
            .0,
        basic("team", "x")
    );
    assert_eq!(
        run(&format!("{REG}/else"), &noninteractive(), &env)
            .unwrap()
            .0,
        basic("host", "x")
    );
    assert_eq!(
        run(REG, &noninteractive(), &env).unwrap().0,
        basic("host", "x")
    );
}

#[test]
fn namespaced_key_does_not_match_bare_registry() {
    let f = Fixture::new();
    let path = f.write(
        "auth.json",
        &format!(
            r#"{{"auths":{{"{REG}/team":{{"auth":"{}"}}}}}}"#,
            b64("team:x")
        ),
    );
    let mut env = f.env();
    env.registry_auth_file = Some(path);
    let e = run(REG, &noninteractive(), &env).unwrap_err();
    assert!(matches!(e, CredentialError::NotFound { .. }), "{e:?}");
}

#[test]
fn xdg_runtime_auth_json_then_home_config() {
    let f = Fixture::new();
    let xdg = f.write(
        "xdg/containers/auth.json",
        &format!(
            r#"{{"auths":{{"https://{REG}":{{"auth":"{}"}}}}}}"#,
            b64(&format!("alice:{PW}"))
        ),
    );
    let home = f.write(
        "home/.config/containers/auth.json",
        &format!(
            r#"{{"auths":{{"{REG}":{{"auth":"{}"}},"other:1":{{"auth":"{}"}}}}}}"#,
            b64("home:x"),
            b64("o:x")
        ),
    );
    let mut env = f.env();
    env.xdg_runtime_dir = Some(f.root().join("xdg"));
    let (c, s) = run(REG, &noninteractive(), &env).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(s, CredentialSource::AuthJson(xdg));

    let (c, s) = run("other:1", &noninteractive(), &env).unwrap();
    assert_eq!(c, basic("o", "x"));
    assert_eq!(s, CredentialSource::AuthJson(home));
}

#[test]
fn auth_json_ignores_plain_username_password_but_reads_identitytoken() {
    let f = Fixture::new();
    let path = f.write(
        "auth.json",
        &format!(
            r#"{{"auths":{{"{REG}":{{"username":"alice","password":"{PW}"}},"tok:1":{{"identitytoken":"{PW}"}}}}}}"#
        ),
    );
    let mut env = f.env();
    env.registry_auth_file = Some(path);
    let e = run(REG, &noninteractive(), &env).unwrap_err();
    assert!(matches!(e, CredentialError::NotFound { .. }), "{e:?}");
    let (c, _) = run("tok:1", &noninteractive(), &env).unwrap();
    assert_eq!(
        c,
        Credential::IdentityToken {
            username: String::new(),
            token: Secret::new(PW)
        }
    );
}

#[test]
fn auth_json_cred_helpers() {
    let f = Fixture::new();
    let path = f.write(
        "auth.json",
        &format!(r#"{{"credHelpers":{{"{REG}":"ct"}}}}"#),
    );
    f.helper(
        "ct",
        &format!(r#"printf '{{"Username":"alice","Secret":"{PW}"}}'"#),
    );
    let mut env = f.env();
    env.registry_auth_file = Some(path.clone());
    let (c, s) = run(REG, &noninteractive(), &env).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(
        s,
        CredentialSource::CredHelper {
            helper: "docker-credential-ct".into(),
            config: path
        }
    );
}

#[test]
fn docker_config_comes_before_auth_json() {
    let f = Fixture::new();
    let cfg = f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
        b64("docker:x")
    ));
    f.write(
        "home/.config/containers/auth.json",
        &format!(
            r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
            b64("podman:x")
        ),
    );
    let (c, s) = run(REG, &noninteractive(), &f.env()).unwrap();
    assert_eq!(c, basic("docker", "x"));
    assert_eq!(s, CredentialSource::DockerConfig(cfg));
}

// ---- not found, prompt ------------------------------------------------------------------------

#[test]
fn not_found_lists_every_path_tried() {
    let f = Fixture::new();
    let mut env = f.env();
    env.docker_config = Some(f.root().join("dc"));
    env.xdg_runtime_dir = Some(f.root().join("xdg"));
    f.write(
        "dc/config.json",
        r#"{"auths":{"elsewhere:1":{"auth":"YTpi"}}}"#,
    );
    let e = run(REG, &noninteractive(), &env).unwrap_err();
    let CredentialError::NotFound { registry, tried } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(registry, REG);
    let msg = e.to_string();
    for p in [
        f.root().join("dc/config.json"),
        f.root().join("xdg/containers/auth.json"),
        f.home().join(".config/containers/auth.json"),
    ] {
        assert!(
            msg.contains(&p.display().to_string()),
            "{p:?} missing from:\n{msg}"
        );
    }
    assert!(msg.contains("--username/--password flags"), "{msg}");
    assert!(msg.contains("--password-stdin"), "{msg}");
    assert!(msg.contains("--docker-config"), "{msg}");
    assert!(msg.contains("--need-credential=false"), "{msg}");
    assert!(msg.contains("not a terminal"), "{msg}");
    assert_eq!(tried.len(), 5, "{tried:?}");
}

#[test]
fn prompt_when_nothing_found_and_interactive() {
    let f = Fixture::new();
    let opts = CredentialOptions {
        interactive: true,
        ..noninteractive()
    };
    let mut p = FakePrompter::with(&["alice\n", PW]);
    let (c, s) = run_with(REG, &opts, &f.env(), &mut p).unwrap();
    assert_eq!(c, basic("alice", PW));
    assert_eq!(s, CredentialSource::Prompt);

    let mut p = FakePrompter::with(&[""]);
    let e = run_with(REG, &opts, &f.env(), &mut p).unwrap_err();
    assert!(matches!(e, CredentialError::Prompt { .. }), "{e:?}");
}

#[test]
fn invalid_registry() {
    let f = Fixture::new();
    assert!(matches!(
        run("", &noninteractive(), &f.env()),
        Err(CredentialError::InvalidRegistry { .. })
    ));
}

// ---- redaction --------------------------------------------------------------------------------

/// Checks that no text shows `PW` (plain or as the Basic `alice:PW` base64), and that every text
/// shows each of `expect` (so the check cannot pass on empty or unrelated output).
fn assert_redacted(what: &str, texts: &[String], expect: &[&str]) {
    let basic_b64 = b64(&format!("alice:{PW}"));
    for t in texts {
        assert!(!t.contains(PW), "{what}: secret leaked in: {t}");
        assert!(
            !t.contains(&basic_b64),
            "{what}: base64 secret leaked in: {t}"
        );
        for e in expect {
            assert!(t.contains(e), "{what}: {e:?} missing from: {t}");
        }
    }
}

/// Resolves `REG` and checks that the credential found really holds `PW`, yet no rendering of
/// it, its source or the whole result shows it.
fn assert_found_redacted(what: &str, env: &Env, user: &str, source_shows: &str) {
    let r = resolve_with(
        REG,
        &noninteractive(),
        env,
        &mut FakePrompter::default(),
        Duration::from_secs(10),
    );
    let (c, s) = r.as_ref().unwrap_or_else(|e| panic!("{what}: {e}"));
    let secret = match c {
        Credential::Basic { password, .. } => password,
        Credential::IdentityToken { token, .. } => token,
    };
    assert_eq!(
        secret.expose(),
        PW,
        "{what}: the credential must carry the secret"
    );
    assert_eq!(c.username(), user, "{what}");
    assert_redacted(
        what,
        &[format!("{c:?}"), format!("{c:#?}"), format!("{r:?}")],
        &["<redacted>", user],
    );
    assert_redacted(
        what,
        &[
            format!("{s}"),
            format!("{s:?}"),
            format!("{s:#?}"),
            format!("{r:?}"),
        ],
        &[source_shows],
    );
}

/// Resolves `REG`, expecting an error, and checks that none of its renderings shows `PW` while
/// each shows `shows`.
fn assert_error_redacted(what: &str, env: &Env, shows: &[&str]) -> CredentialError {
    let r = resolve_with(
        REG,
        &noninteractive(),
        env,
        &mut FakePrompter::default(),
        Duration::from_secs(10),
    );
    let e = match r {
        Ok((c, s)) => panic!("{what}: expected an error, got {c:?} from {s}"),
        Err(e) => e,
    };
    assert_redacted(
        what,
        &[format!("{e}"), format!("{e:?}"), format!("{e:#?}")],
        shows,
    );
    e
}

#[test]
fn nothing_prints_the_secret() {
    let s = Secret::new(PW);
    assert_eq!(format!("{s:?}"), "<redacted>");
    assert_eq!(format!("{s}"), "<redacted>");
    assert_eq!(format!("{s:#?}"), "<redacted>");
    assert_eq!(s.expose(), PW);
    let opts = CredentialOptions {
        username: Some("alice".into()),
        password: Some(s),
        docker_config: None,
        interactive: false,
    };
    assert_redacted(
        "options",
        &[format!("{opts:?}"), format!("{opts:#?}")],
        &["alice", "<redacted>"],
    );

    // Sources that hold the secret: config.json `auth` and `username`/`password`, auth.json
    // `identitytoken`, a helper's `Secret` (as a password and as an identity token).
    let f = Fixture::new();
    let env = f.env();
    let cfg = f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}}}}"#,
        b64(&format!("alice:{PW}"))
    ));
    let cfg_shown = cfg.display().to_string();
    assert_found_redacted("config auth", &env, "alice", &cfg_shown);

    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"username":"alice","password":"{PW}"}}}}}}"#
    ));
    assert_found_redacted("config password", &env, "alice", &cfg_shown);

    f.home_docker_config(&format!(r#"{{"credHelpers":{{"{REG}":"leak"}}}}"#));
    f.helper(
        "leak",
        &format!(r#"printf '{{"ServerURL":"x","Username":"alice","Secret":"{PW}"}}'"#),
    );
    assert_found_redacted("helper", &env, "alice", "docker-credential-leak");
    assert_found_redacted("helper config", &env, "alice", &cfg_shown);
    f.helper(
        "leak",
        &format!(r#"printf '{{"ServerURL":"x","Username":"<token>","Secret":"{PW}"}}'"#),
    );
    assert_found_redacted("helper token", &env, "", "docker-credential-leak");

    let auth_json = f.write(
        "auth.json",
        &format!(r#"{{"auths":{{"{REG}":{{"identitytoken":"{PW}"}}}}}}"#),
    );
    let mut podman_env = Fixture::new().env();
    podman_env.registry_auth_file = Some(auth_json.clone());
    assert_found_redacted(
        "auth.json identitytoken",
        &podman_env,
        "",
        &auth_json.display().to_string(),
    );

    // Errors about files and helpers that hold the secret.
    f.home_docker_config(&format!(r#"{{"auths":{{"{REG}":{{"password":"{PW}", "#));
    assert_error_redacted("truncated JSON", &env, &[&cfg_shown]);
    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"username":["{PW}"]}}}}}}"#
    ));
    assert_error_redacted("mistyped field", &env, &[&cfg_shown, "username"]);
    f.home_docker_config(&format!(r#"{{"auths":{{"{REG}":{{"auth":"{PW}!!"}}}}}}"#));
    assert_error_redacted("auth not base64", &env, &[&cfg_shown, "base64"]);
    f.home_docker_config(&format!(r#"{{"auths":{{"{REG}":{{"auth":"{PW}"}}}}}}"#));
    assert_error_redacted("auth without a colon", &env, &[&cfg_shown, "base64"]);

    f.home_docker_config(&format!(
        r#"{{"auths":{{"{REG}":{{"auth":"{}"}}}},"credsStore":"leak"}}"#,
        b64(&format!("alice:{PW}"))
    ));
    f.helper(
        "leak",
        &format!(r#"printf '{{"Username":"alice","Secret":"{PW}"}}'; exit 1"#),
    );
    let e = assert_error_redacted("failing helper", &env, &["docker-credential-leak"]);
    assert!(matches!(e, CredentialError::HelperFailed { .. }), "{e:?}");
    f.helper("leak", &format!("echo 'Secret={PW}'"));
    let e = assert_error_redacted("helper junk", &env, &["docker-credential-leak"]);
    assert!(
        matches!(e, CredentialError::HelperBadOutput { .. }),
        "{e:?}"
    );
    f.helper(
        "leak",
        &format!(r#"printf '{{"Username":"alice","Secret":["{PW}"]}}'"#),
    );
    let e = assert_error_redacted(
        "helper mistyped",
        &env,
        &["docker-credential-leak", "Secret"],
    );
    assert!(
        matches!(e, CredentialError::HelperBadOutput { .. }),
        "{e:?}"
    );
    // The helper has nothing; the inline auth holding the secret is ignored and listed.
    f.helper(
        "leak",
        "echo 'credentials not found in native keychain'; exit 1",
    );
    let e = assert_error_redacted(
        "ignored inline auth",
        &env,
        &[&cfg_shown, "docker-credential-leak"],
    );
    assert!(matches!(e, CredentialError::NotFound { .. }), "{e:?}");
}
