//! Where ferry-push finds credentials, end to end against a real registry: the documented order
//! of sources (flags, Docker config, containers auth.json, a terminal prompt), the mirror
//! stanza's `pullCredentialConfigPath`, and identity tokens exchanged at the token realm.
//!
//! Every run gets an empty `HOME` and `XDG_RUNTIME_DIR` and no `DOCKER_CONFIG` or
//! `REGISTRY_AUTH_FILE` unless a test sets them, so the developer's own files are never read.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_e2e::registry_push::{
    assert_registry_has_package, basic_auth, package, run_against, target, Pkg,
};
use ferry_e2e::{bin, run, spawn_piped, without_proxies, Run};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, TOKEN_SERVICE};

/// Empty `HOME` and `XDG_RUNTIME_DIR` for ferry, plus room for credentials files.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    xdg: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let home = root.join("home");
        let xdg = root.join("xdg");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&xdg).unwrap();
        Sandbox {
            _dir: dir,
            root,
            home,
            xdg,
        }
    }

    /// `DIR/config.json` holding `auths: {host: entry}`; returns DIR.
    fn docker_config(&self, name: &str, host: &str, entry: serde_json::Value) -> PathBuf {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::json!({ "auths": { host: entry } }).to_string(),
        )
        .unwrap();
        dir
    }

    /// A containers auth.json holding `auths: {host: {auth}}`.
    fn auth_json(&self, name: &str, host: &str, user: &str, pass: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(
            &path,
            serde_json::json!({ "auths": { host: { "auth": basic_auth(user, pass) } } })
                .to_string(),
        )
        .unwrap();
        path
    }

    /// ferry-push with this sandbox's environment (nothing of the developer's).
    fn ferry_push(&self) -> Command {
        let mut cmd = Command::new(bin("ferry-push"));
        cmd.env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.xdg);
        cmd
    }

    /// Runs ferry-push against `reg` with `extra` flags and `env` on top of the sandbox;
    /// `flags_ok` adds the registry's own `--username` and `--password-stdin`.
    fn push(
        &self,
        reg: &Registry,
        pkg: &Pkg,
        ns: &str,
        extra: &[&str],
        env: &[(&str, &Path)],
        flags_ok: bool,
    ) -> Run {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.to_str().unwrap())).collect();
        run_against(self.ferry_push(), reg, &pkg.path, ns, extra, &env, flags_ok)
    }

    /// Pushes `case` to `reg` and checks that it ends as the case says.
    fn push_case(&self, reg: &Registry, pkg: &Pkg, case: &Case) -> Run {
        let r = self.push(reg, pkg, case.ns, case.extra, case.env, case.flags_ok);
        match case.outcome {
            Outcome::Pushed(docker_config) => {
                assert_pushed(&r, case.what, docker_config, reg, case.ns, pkg);
            }
            Outcome::Refused => assert_refused(&r, case.what),
        }
        r
    }
}

/// How a push of a credentials test must end.
enum Outcome<'a> {
    /// Success, with the credentials of this Docker config directory (named by
    /// `pullCredentialConfigPath`), or of a source the stanza does not name (`None`).
    Pushed(Option<&'a Path>),
    /// Refused by the registry with the credentials ferry picked.
    Refused,
}

/// One push of a credentials test: where the credentials are, and how it must end.
struct Case<'a> {
    /// What the case shows (for failure messages).
    what: &'a str,
    /// The namespace pushed to.
    ns: &'a str,
    /// Extra ferry-push flags.
    extra: &'a [&'a str],
    /// `DOCKER_CONFIG` / `REGISTRY_AUTH_FILE` for the run.
    env: &'a [(&'a str, &'a Path)],
    /// Whether the registry's own `--username` and `--password-stdin` are given.
    flags_ok: bool,
    /// How the push must end.
    outcome: Outcome<'a>,
}

/// The `pullCredentialConfigPath:` values of the printed `registryMirrors:` stanza (which must
/// be there).
fn pull_credential_paths(r: &Run) -> Vec<String> {
    let start = r
        .stdout
        .find("registryMirrors:")
        .unwrap_or_else(|| panic!("no registryMirrors: stanza in\n{}", r.stdout));
    let stanza = &r.stdout[start..];
    let stanza = &stanza[..stanza.find("\n\n").unwrap_or(stanza.len())];
    stanza
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pullCredentialConfigPath:"))
        .map(|p| p.trim().to_owned())
        .collect()
}

/// A push refused by the registry with the credentials ferry picked (not "none found").
fn assert_refused(r: &Run, what: &str) {
    assert_eq!(r.code, 2, "{what}: {}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("authentication to") && r.stderr.contains("401"),
        "{what}: not an authentication refusal:\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("no credentials found"),
        "{what}: {}",
        r.stderr
    );
}

/// A successful push: exit 0, the package in `reg` under `ns`, and the mirror stanza's
/// `pullCredentialConfigPath` naming the `config.json` of `docker_config` or, for `None`,
/// absent from the output altogether.
fn assert_pushed(
    r: &Run,
    what: &str,
    docker_config: Option<&Path>,
    reg: &Registry,
    ns: &str,
    pkg: &Pkg,
) {
    assert_eq!(r.code, 0, "{what}: {}\n{}", r.stderr, r.stdout);
    let expected: Vec<String> = docker_config
        .map(|dir| dir.join("config.json").display().to_string())
        .into_iter()
        .collect();
    assert_eq!(pull_credential_paths(r), expected, "{what}: {}", r.stdout);
    if docker_config.is_none() {
        assert!(
            !r.stdout.contains("pullCredentialConfigPath"),
            "{what}: {}",
            r.stdout
        );
    }
    assert_registry_has_package(reg, ns, pkg);
}

/// The positions of `items` in `text`, asserting each is there and they come in this order.
fn assert_in_order(text: &str, items: &[String]) {
    let mut at = 0;
    for item in items {
        let found = text[at..]
            .find(item.as_str())
            .unwrap_or_else(|| panic!("{item:?} missing (or out of order) in:\n{text}"));
        at += found + item.len();
    }
}

/// Flags win over both files, `DOCKER_CONFIG` over auth.json, and auth.json is used when no
/// Docker config has an entry for the registry. Exactly one source is right each time: success
/// or a 401 (exit 2) shows which one ferry used; "no credentials found" lists the sources tried,
/// in order, with their paths.
#[test]
fn credentials_are_taken_in_the_documented_order() {
    let pkg = package(71, 32 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let (user, pass) = reg.credentials().unwrap();
    let host = reg.host();
    let sb = Sandbox::new();

    let docker_right = sb.docker_config(
        "docker-right",
        &host,
        serde_json::json!({"auth": basic_auth(&user, &pass)}),
    );
    let docker_wrong = sb.docker_config(
        "docker-wrong",
        &host,
        serde_json::json!({"auth": basic_auth("docker-user", "docker-pass")}),
    );
    // Right credentials, but for another registry only.
    let docker_other = sb.docker_config(
        "docker-other",
        "other.example:5000",
        serde_json::json!({"auth": basic_auth(&user, &pass)}),
    );
    let auth_right = sb.auth_json("auth-right.json", &host, &user, &pass);
    let auth_wrong = sb.auth_json("auth-wrong.json", &host, "podman-user", "podman-pass");
    let auth_other = sb.auth_json("auth-other.json", "other.example:5000", &user, &pass);

    let cases = [
        // (a) Flags win over both files.
        Case {
            what: "flags right, files wrong",
            ns: "a-flags",
            extra: &[],
            env: &[
                ("DOCKER_CONFIG", &docker_wrong),
                ("REGISTRY_AUTH_FILE", &auth_wrong),
            ],
            flags_ok: true,
            outcome: Outcome::Pushed(None),
        },
        Case {
            what: "flags wrong, files right",
            ns: "a-flags-wrong",
            extra: &["--username", "flag-user", "--password", "flag-pass"],
            env: &[
                ("DOCKER_CONFIG", &docker_right),
                ("REGISTRY_AUTH_FILE", &auth_right),
            ],
            flags_ok: false,
            outcome: Outcome::Refused,
        },
        // (b) DOCKER_CONFIG wins over auth.json.
        Case {
            what: "docker config right, auth.json wrong",
            ns: "b-docker",
            extra: &[],
            env: &[
                ("DOCKER_CONFIG", &docker_right),
                ("REGISTRY_AUTH_FILE", &auth_wrong),
            ],
            flags_ok: false,
            outcome: Outcome::Pushed(Some(&docker_right)),
        },
        Case {
            what: "docker config wrong, auth.json right",
            ns: "b-docker-wrong",
            extra: &[],
            env: &[
                ("DOCKER_CONFIG", &docker_wrong),
                ("REGISTRY_AUTH_FILE", &auth_right),
            ],
            flags_ok: false,
            outcome: Outcome::Refused,
        },
        // (c) auth.json when there is no Docker config (~/.docker absent: HOME is empty) ...
        Case {
            what: "only auth.json, right",
            ns: "c-auth-json",
            extra: &[],
            env: &[("REGISTRY_AUTH_FILE", &auth_right)],
            flags_ok: false,
            outcome: Outcome::Pushed(None),
        },
        Case {
            what: "only auth.json, wrong",
            ns: "c-auth-json-wrong",
            extra: &[],
            env: &[("REGISTRY_AUTH_FILE", &auth_wrong)],
            flags_ok: false,
            outcome: Outcome::Refused,
        },
        // ... and when the Docker config has no entry for this registry.
        Case {
            what: "docker config for another host",
            ns: "c-other-docker",
            extra: &[],
            env: &[
                ("DOCKER_CONFIG", &docker_other),
                ("REGISTRY_AUTH_FILE", &auth_right),
            ],
            flags_ok: false,
            outcome: Outcome::Pushed(None),
        },
    ];
    for case in &cases {
        if case.env.iter().all(|(k, _)| *k != "DOCKER_CONFIG") {
            assert!(!sb.home.join(".docker").exists(), "{}", case.what);
        }
        sb.push_case(&reg, &pkg, case);
    }

    // Nothing for this registry anywhere: the error names every source, in order.
    let r = sb.push(
        &reg,
        &pkg,
        "none",
        &[],
        &[
            ("DOCKER_CONFIG", &docker_other),
            ("REGISTRY_AUTH_FILE", &auth_other),
        ],
        false,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_in_order(
        &r.stderr,
        &[
            format!("no credentials found for registry {host}"),
            "--username/--password flags (not given)".to_owned(),
            format!(
                "Docker config {} (no auths entry for {host})",
                docker_other.join("config.json").display()
            ),
            format!(
                "containers auth file {} (no auths entry for {host})",
                auth_other.display()
            ),
            "interactive prompt (not available".to_owned(),
        ],
    );
    let r = sb.push(
        &reg,
        &pkg,
        "none",
        &[],
        &[("REGISTRY_AUTH_FILE", &auth_other)],
        false,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_in_order(
        &r.stderr,
        &[
            format!(
                "Docker config {} (file not found)",
                sb.home.join(".docker/config.json").display()
            ),
            format!(
                "containers auth file {} (no auths entry for {host})",
                auth_other.display()
            ),
        ],
    );
    // REGISTRY_AUTH_FILE replaces the default auth.json locations.
    assert!(
        !r.stderr.contains(&sb.xdg.display().to_string()),
        "{}",
        r.stderr
    );
}

/// Single-quotes `s` for `sh -c`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Output of a child collected by a background thread.
fn collect(
    mut from: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b = buf.clone();
    let t = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            b.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, t)
}

fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
}

/// Polls `ready` every 20 ms until it holds or `secs` pass.
fn wait_until(secs: u64, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    ready()
}

/// The pid of the `ferry-push` process whose parent is `parent`, if running.
fn ferry_child_of(parent: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && comm.ends_with("(ferry-push") {
            return Some(pid);
        }
    }
    None
}

/// Is ECHO set on terminal `tty` (`stty -F TTY -a`)?
fn echo_on(tty: &Path) -> Option<bool> {
    let out = Command::new("stty")
        .arg("-F")
        .arg(tty)
        .arg("-a")
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.contains(&"-echo") {
        Some(false)
    } else if words.contains(&"echo") {
        Some(true)
    } else {
        None
    }
}

/// With no credentials anywhere, ferry-push on a terminal asks for a user name (echoed) and a
/// password (not echoed) and pushes with them; off a terminal it fails listing every source
/// tried, with its path.
#[test]
fn a_terminal_prompt_asks_for_credentials_when_none_are_found() {
    const USER: &str = "prompted-user";
    const PASS: &str = "pty-Secret-9417";
    let pkg = package(72, 32 * 1024);
    let reg = Registry::start(RegistryOptions {
        user: USER.into(),
        password: PASS.into(),
        ..RegistryOptions::new(RegistryMode::TlsHtpasswd)
    })
    .unwrap();
    let host = reg.host();
    let sb = Sandbox::new();

    // Off a terminal: exit 2, every source named.
    let r = sb.push(&reg, &pkg, "notty", &[], &[], false);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_in_order(
        &r.stderr,
        &[
            format!("no credentials found for registry {host}; tried:"),
            "--username/--password flags (not given)".to_owned(),
            format!(
                "Docker config {} (file not found)",
                sb.home.join(".docker/config.json").display()
            ),
            format!(
                "containers auth file {} (file not found)",
                sb.xdg.join("containers/auth.json").display()
            ),
            format!(
                "containers auth file {} (file not found)",
                sb.home.join(".config/containers/auth.json").display()
            ),
            "interactive prompt (not available: stdin or stderr is not a terminal)".to_owned(),
            "--password-stdin".to_owned(),
        ],
    );

    // On a terminal (util-linux `script` runs the command on a pseudo-terminal). `stty echo`
    // makes sure the terminal echoes what is typed, as a user's does, whatever `script` set up:
    // only ferry can keep the password off the screen.
    let command = format!(
        "stty echo; exec {} --source {} --private-registry {} --cacert {}",
        sh_quote(&bin("ferry-push").display().to_string()),
        sh_quote(&pkg.path.display().to_string()),
        sh_quote(&target(&reg, "tty")),
        sh_quote(&reg.ca_cert_path().unwrap().display().to_string()),
    );
    let mut script = sb.ferry_push();
    without_proxies(&mut script);
    // Same environment as ferry-push's, with `script` as the program.
    let mut cmd = Command::new("script");
    for (k, v) in script.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = spawn_piped(cmd.args(["-qefc", &command, "/dev/null"]));
    let mut stdin = child.stdin.take().unwrap();
    let (screen, reader) = collect(child.stdout.take().unwrap());
    let (errors, err_reader) = collect(child.stderr.take().unwrap());
    let fail = |child: &mut std::process::Child, why: &str| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{why}\nscreen:\n{}\nscript stderr:\n{}",
            text(&screen),
            text(&errors)
        );
    };

    let user_prompt = format!("Username for {host}: ");
    if !wait_until(60, || text(&screen).contains(&user_prompt)) {
        fail(&mut child, "no user name prompt");
    }
    stdin.write_all(format!("{USER}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let pass_prompt = format!("Password for {USER}@{host}: ");
    if !wait_until(30, || text(&screen).contains(&pass_prompt)) {
        fail(&mut child, "no password prompt");
    }
    // The prompt is written before echo is turned off: wait for ferry to turn it off (a real
    // user types after that too), and fail if it never does.
    let mut tty = None;
    let echo_off = wait_until(10, || {
        if tty.is_none() {
            tty = ferry_child_of(child.id())
                .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/fd/0")).ok());
        }
        tty.as_deref().and_then(echo_on) == Some(false)
    });
    if !echo_off {
        fail(
            &mut child,
            &format!("echo is still on while ferry reads the password (tty {tty:?})"),
        );
    }
    stdin.write_all(format!("{PASS}\n").as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut status = None;
    if !wait_until(120, || {
        status = child.try_wait().unwrap();
        status.is_some()
    }) {
        fail(&mut child, "ferry-push did not finish");
    }
    drop(stdin);
    reader.join().unwrap();
    err_reader.join().unwrap();
    let screen = text(&screen);
    assert_eq!(
        status.unwrap().code(),
        Some(0),
        "{screen}\n{}",
        text(&errors)
    );
    // Echo was on for the user name, so it shows right after its prompt.
    assert!(
        screen.contains(&format!("{user_prompt}{USER}")),
        "user name not echoed:\n{screen}"
    );
    assert!(screen.contains(&pass_prompt), "{screen}");
    assert!(
        !screen.contains(PASS),
        "the password is on the screen:\n{screen}"
    );
    assert!(!text(&errors).contains(PASS));
    assert!(screen.contains("pushed 4 image(s)"), "{screen}");
    assert_registry_has_package(&reg, "tty", &pkg);
}

/// `pullCredentialConfigPath` names the Docker config ferry took the credentials from, and only
/// then: not after flags (even with a Docker config present), not for an anonymous registry.
#[test]
fn the_mirror_stanza_names_the_docker_config_only_when_it_was_used() {
    let pkg = package(73, 32 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let (user, pass) = reg.credentials().unwrap();
    let sb = Sandbox::new();
    let docker = sb.docker_config(
        "docker",
        &reg.host(),
        serde_json::json!({"auth": basic_auth(&user, &pass)}),
    );
    let config_json = docker.join("config.json");

    let r = sb.push_case(
        &reg,
        &pkg,
        &Case {
            what: "credentials from the Docker config",
            ns: "from-docker-config",
            extra: &[],
            env: &[("DOCKER_CONFIG", &docker)],
            flags_ok: false,
            outcome: Outcome::Pushed(Some(&docker)),
        },
    );
    let ca = reg.ca_cert_path().unwrap().display().to_string();
    assert!(
        r.stdout
            .contains(&format!("registryMirrors:\n  - endpoint: https://{}/v2/from-docker-config\n    caCertPath: {ca}\n    pullCredentialConfigPath: {}\n", reg.host(), config_json.display())),
        "{}",
        r.stdout
    );

    // The same Docker config present, but the flags are used: no path.
    sb.push_case(
        &reg,
        &pkg,
        &Case {
            what: "flags, with a Docker config present",
            ns: "from-flags",
            extra: &[],
            env: &[("DOCKER_CONFIG", &docker)],
            flags_ok: true,
            outcome: Outcome::Pushed(None),
        },
    );

    // Anonymous (--need-credential=false) with a Docker config that has an entry: no path.
    let anon = Registry::start(RegistryOptions::new(RegistryMode::Tls)).unwrap();
    let anon_docker = sb.docker_config(
        "docker-anon",
        &anon.host(),
        serde_json::json!({"auth": basic_auth(&user, &pass)}),
    );
    sb.push_case(
        &anon,
        &pkg,
        &Case {
            what: "anonymous, with a Docker config entry",
            ns: "anonymous",
            extra: &[],
            env: &[("DOCKER_CONFIG", &anon_docker)],
            flags_ok: false,
            outcome: Outcome::Pushed(None),
        },
    );
}

/// `curl` to the token issuer (trusting the registry's CA); returns the body as JSON.
fn issuer(reg: &Registry, path: &str, form: Option<&str>) -> serde_json::Value {
    let realm = reg.token_realm().unwrap();
    let url = realm.replace("/token", path);
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--cacert"])
        .arg(reg.ca_cert_path().unwrap());
    if let Some(f) = form {
        cmd.args(["--data-raw", f]);
    }
    let r = run(cmd.arg(&url));
    assert_eq!(r.code, 0, "curl {url}: {}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// `(method, grant_type, status)` of every request the issuer saw since `from`.
fn issuer_log(reg: &Registry, from: usize) -> Vec<(String, String, u64)> {
    let log = issuer(reg, "/requests", None);
    log.as_array().unwrap()[from..]
        .iter()
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_owned(),
                e["grant_type"].as_str().unwrap_or("-").to_owned(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A Docker config `auths` entry holding an identity token (as `docker login` leaves it with a
/// token server that hands out refresh tokens) is exchanged at the realm with an OAuth2 POST
/// `grant_type=refresh_token`; the token never shows; a wrong one is refused.
#[test]
fn an_identity_token_is_exchanged_with_an_oauth_post() {
    let pkg = package(74, 32 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsToken)).unwrap();
    let (user, pass) = reg.credentials().unwrap();
    let sb = Sandbox::new();

    // What `docker login` does: a password grant asking for offline access.
    let form = format!(
        "grant_type=password&username={user}&password={pass}&service={TOKEN_SERVICE}&client_id=ferry-e2e&access_type=offline"
    );
    let login = issuer(&reg, "/token", Some(&form));
    let identity = login["refresh_token"].as_str().unwrap().to_owned();
    assert!(identity.len() >= 32, "{login}");
    let seen = issuer_log(&reg, 0).len();

    let docker = sb.docker_config(
        "docker",
        &reg.host(),
        serde_json::json!({"auth": basic_auth("<token>", ""), "identitytoken": identity}),
    );
    let r = sb.push(
        &reg,
        &pkg,
        "identity",
        &[],
        &[("DOCKER_CONFIG", &docker)],
        false,
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let exchanges = issuer_log(&reg, seen);
    assert!(!exchanges.is_empty(), "no token request");
    assert!(
        exchanges
            .iter()
            .all(|e| *e == ("POST".to_owned(), "refresh_token".to_owned(), 200)),
        "expected only POST grant_type=refresh_token answered 200: {exchanges:?}"
    );
    let log = issuer(&reg, "/requests", None);
    let client_id = &log.as_array().unwrap()[seen]["client_id"];
    assert!(
        client_id.as_str().is_some_and(|c| !c.is_empty()),
        "no client_id: {log}"
    );
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(&identity), "identity token shown:\n{out}");
    }
    assert_pushed(&r, "identity token", Some(&docker), &reg, "identity", &pkg);

    // An identity token the issuer does not know: refused (401 at the realm), exit 2, not shown.
    let wrong = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let wrong_docker = sb.docker_config(
        "docker-wrong",
        &reg.host(),
        serde_json::json!({"auth": basic_auth("<token>", ""), "identitytoken": wrong}),
    );
    let seen = issuer_log(&reg, 0).len();
    let r = sb.push(
        &reg,
        &pkg,
        "identity-wrong",
        &[],
        &[("DOCKER_CONFIG", &wrong_docker)],
        false,
    );
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("refused"), "{}", r.stderr);
    let exchanges = issuer_log(&reg, seen);
    assert_eq!(
        exchanges.first(),
        Some(&("POST".to_owned(), "refresh_token".to_owned(), 401)),
        "{exchanges:?}"
    );
    assert!(
        exchanges.iter().all(|e| e.2 != 200),
        "a token was issued for a wrong identity token: {exchanges:?}"
    );
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(wrong), "identity token shown:\n{out}");
    }
}
