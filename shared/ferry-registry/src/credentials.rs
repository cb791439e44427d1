//! Registry credentials: where they come from and how they are read.
//!
//! [`resolve`] finds a username and secret for one private registry, trying in order:
//!
//! 1. the `--username` / `--password` (or `--password-stdin`) flags, prompting on the terminal for
//!    the missing half when only one was given and ferry is interactive;
//! 2. the Docker CLI `config.json` (`--docker-config FILE`, else `$DOCKER_CONFIG/config.json`, else
//!    `~/.docker/config.json`): `credHelpers[registry]`, else `credsStore`, else the `auths` entry
//!    (`auth`, `username`/`password` or `identitytoken`), with docker's key normalisation (a legacy
//!    key such as `https://reg:5000/v1/` matches `reg:5000`);
//! 3. the containers (podman, skopeo) `auth.json`: `$REGISTRY_AUTH_FILE` alone when set, else
//!    `$XDG_RUNTIME_DIR/containers/auth.json` (or `/run/containers/<uid>/auth.json`) and then
//!    `~/.config/containers/auth.json`; namespaced keys (`host:port/ns`) match most specific first;
//! 4. an interactive prompt (password without echo).
//!
//! When nothing is found the error lists every source tried, so the user can see which files
//! ferry looked at and how to supply credentials instead.
//!
//! Credential helpers (`docker-credential-<suffix> get`) are looked up on the `PATH` of the
//! [`Env`] snapshot, run with that `PATH`, and killed after [`HELPER_TIMEOUT`].
//!
//! Secrets are held in [`Secret`], whose `Debug` and `Display` print `<redacted>`. No error in this
//! module quotes the contents of a credentials file or a helper's JSON answer. A helper that
//! *fails* has its own error message quoted (its stderr, else its stdout when that is not JSON;
//! 300 characters at most), as docker does: ferry cannot know a secret the helper did not give
//! it, so a helper that prints its own secret in an error message is quoted with it.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod file;
mod helper;
#[cfg(test)]
mod tests;

use file::{entry_credential, read_config, AuthEntry};
use helper::{find_on_path, run_helper_get};

/// How long a credential helper may run before it is killed.
pub const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// The message credential helpers print (on stdout, exiting non-zero) when they hold nothing.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";

/// The `Username` a credential helper returns when `Secret` is an identity (refresh) token.
const TOKEN_USERNAME: &str = "<token>";

/// The key Docker uses for Docker Hub in `config.json` and with helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Longest helper error message kept in [`CredentialError::HelperFailed`], in characters.
const HELPER_MESSAGE_MAX: usize = 300;

/// Most bytes read from a helper's stdout or stderr.
const HELPER_OUTPUT_MAX: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/// A secret string: `Debug` and `Display` print `<redacted>`. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself: only for putting on the wire (Basic auth, token requests).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A credential for one registry. `Debug` never shows the password or token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password, sent as HTTP Basic (to the registry or to its token server).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// docker config.json "identitytoken": an OAuth2 refresh token, used as `refresh_token` in a
    /// token POST (`grant_type=refresh_token`, `client_id=ferry`).
    IdentityToken {
        /// The user name, when known (often empty for tokens from helpers).
        username: String,
        /// The refresh token.
        token: Secret,
    },
}

impl Credential {
    /// The user name (possibly empty for an identity token).
    pub fn username(&self) -> &str {
        match self {
            Credential::Basic { username, .. } | Credential::IdentityToken { username, .. } => {
                username
            }
        }
    }
}

/// Where a credential came from (shown to users, never containing the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `--username` and `--password` / `--password-stdin`.
    Flags,
    /// An `auths` entry of this Docker `config.json`.
    DockerConfig(PathBuf),
    /// A credential helper configured in a Docker `config.json` or containers `auth.json`.
    CredHelper {
        /// The helper program, e.g. `docker-credential-pass`.
        helper: String,
        /// The file that configured it (`credHelpers` or `credsStore`).
        config: PathBuf,
    },
    /// An `auths` entry of this containers `auth.json`.
    AuthJson(PathBuf),
    /// Typed at the terminal (also when only the password was prompted for).
    Prompt,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Flags => f.write_str("--username/--password flags"),
            CredentialSource::DockerConfig(p) => write!(f, "Docker config {}", p.display()),
            CredentialSource::CredHelper { helper, config } => {
                write!(
                    f,
                    "credential helper {helper} (configured in {})",
                    config.display()
                )
            }
            CredentialSource::AuthJson(p) => write!(f, "containers auth file {}", p.display()),
            CredentialSource::Prompt => f.write_str("interactive prompt"),
        }
    }
}

/// What the command line says about credentials.
#[derive(Debug, Clone, Default)]
pub struct CredentialOptions {
    /// `--username`.
    pub username: Option<String>,
    /// From `--password` or `--password-stdin` (the CLI reads stdin).
    pub password: Option<Secret>,
    /// `--docker-config FILE` (a `config.json` path; a directory is taken to hold `config.json`).
    pub docker_config: Option<PathBuf>,
    /// stdin and stderr are a TTY: ferry may prompt.
    pub interactive: bool,
}

/// Environment snapshot (so tests don't mutate the process environment). Empty variables count
/// as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `DOCKER_CONFIG`: a directory holding `config.json`.
    pub docker_config: Option<PathBuf>,
    /// `REGISTRY_AUTH_FILE`: a containers `auth.json`.
    pub registry_auth_file: Option<PathBuf>,
    /// `XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `PATH`, searched for credential helpers and passed to them.
    pub path: Option<OsString>,
}

impl Env {
    /// Reads the variables from the process environment.
    pub fn from_process() -> Env {
        fn var(name: &str) -> Option<OsString> {
            std::env::var_os(name).filter(|v| !v.is_empty())
        }
        Env {
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            registry_auth_file: var("REGISTRY_AUTH_FILE").map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            path: var("PATH"),
        }
    }
}

/// Why credentials could not be resolved. No variant holds a secret or file contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The registry string is empty or not a host.
    #[error("invalid registry {registry:?}: expected host[:port]")]
    InvalidRegistry {
        /// The registry as given.
        registry: String,
    },
    /// `--username` without a password, and ferry may not prompt.
    #[error(
        "--username {username} was given without --password or --password-stdin, and ferry cannot \
         prompt for it because stdin or stderr is not a terminal; pass the password with \
         --password-stdin"
    )]
    MissingPassword {
        /// The user name given.
        username: String,
    },
    /// A password without `--username`, and ferry may not prompt.
    #[error(
        "a password was given without --username, and ferry cannot prompt for the user name \
         because stdin or stderr is not a terminal; pass --username"
    )]
    MissingUsername,
    /// A credentials file is malformed.
    #[error("malformed credentials file {path}: {why}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong (never its contents).
        why: String,
    },
    /// A credentials file exists but cannot be read.
    #[error("cannot read credentials file {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A configured credential helper is not on `PATH`.
    #[error(
        "credential helper {helper} (configured in {config} for {registry}) is not on PATH",
        config = .config.display()
    )]
    HelperMissing {
        /// The program name, e.g. `docker-credential-pass`.
        helper: String,
        /// The registry.
        registry: String,
        /// The file that configured the helper.
        config: PathBuf,
    },
    /// A credential helper could not be started.
    #[error("cannot run credential helper {path}: {source}", path = .path.display())]
    HelperSpawn {
        /// The program name.
        helper: String,
        /// Where it was found.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A credential helper exited non-zero (other than "credentials not found").
    #[error("credential helper {helper} failed for {registry} ({status}): {stderr}")]
    HelperFailed {
        /// The program name.
        helper: String,
        /// The registry.
        registry: String,
        /// How it exited, e.g. `exit status: 1`.
        status: String,
        /// Its error message: stderr, else stdout when that is not JSON; trimmed, at most 300
        /// characters.
        stderr: String,
    },
    /// A credential helper ran longer than [`HELPER_TIMEOUT`] and was killed.
    #[error("credential helper {helper} did not answer for {registry} within {seconds} s and was killed")]
    HelperTimeout {
        /// The program name.
        helper: String,
        /// The registry.
        registry: String,
        /// The timeout.
        seconds: u64,
    },
    /// A credential helper succeeded but printed something other than the expected JSON.
    #[error("credential helper {helper} returned unusable output for {registry}: {why}")]
    HelperBadOutput {
        /// The program name.
        helper: String,
        /// The registry.
        registry: String,
        /// What is wrong (never the output itself).
        why: String,
    },
    /// Reading from the terminal failed or was abandoned.
    #[error("cannot read credentials for {registry} from the terminal: {why}")]
    Prompt {
        /// The registry.
        registry: String,
        /// What went wrong.
        why: String,
    },
    /// No source had credentials for the registry.
    #[error("{}", not_found_message(.registry, .tried))]
    NotFound {
        /// The registry.
        registry: String,
        /// Every source tried, with why it gave nothing (paths included).
        tried: Vec<String>,
    },
}

fn not_found_message(registry: &str, tried: &[String]) -> String {
    let mut m = format!("no credentials found for registry {registry}; tried:\n");
    for t in tried {
        m.push_str("  - ");
        m.push_str(t);
        m.push('\n');
    }
    m.push_str(&format!(
        "Provide credentials with --username and --password-stdin, point --docker-config at a \
         config.json that has them (for example after `docker login {registry}`), or pass \
         --need-credential=false if the registry accepts anonymous pushes."
    ));
    m
}

/// Resolves credentials for `registry`: a `host[:port]` such as `10.0.0.5:5000`, exactly as the
/// user typed it in `--private-registry`. A trailing `/namespace` path is accepted and used only
/// to pick the most specific namespaced key of a containers `auth.json`; a leading `http://` or
/// `https://` is ignored.
///
/// See the [module documentation](self) for the order of sources.
pub fn resolve(
    registry: &str,
    opts: &CredentialOptions,
    env: &Env,
) -> Result<(Credential, CredentialSource), CredentialError> {
    resolve_with(registry, opts, env, &mut TtyPrompter, HELPER_TIMEOUT)
}

// ---------------------------------------------------------------------------------------------
// Resolution
// ---------------------------------------------------------------------------------------------

/// Reads the user name and password at the terminal (a trait so tests can fake it).
trait Prompter {
    fn username(&mut self, prompt: &str) -> io::Result<String>;
    fn password(&mut self, prompt: &str) -> io::Result<String>;
}

/// Prompts on the controlling terminal (`/dev/tty`), the password without echo.
struct TtyPrompter;

impl Prompter for TtyPrompter {
    fn username(&mut self, prompt: &str) -> io::Result<String> {
        #[cfg(unix)]
        {
            let tty = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/tty")?;
            let mut out = &tty;
            out.write_all(prompt.as_bytes())?;
            out.flush()?;
            let mut line = String::new();
            if io::BufReader::new(&tty).read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"));
            }
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
        #[cfg(not(unix))]
        {
            let mut err = io::stderr();
            err.write_all(prompt.as_bytes())?;
            err.flush()?;
            let mut line = String::new();
            if io::stdin().lock().read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"));
            }
            Ok(line.trim_end_matches(['\r', '\n']).to_string())
        }
    }

    fn password(&mut self, prompt: &str) -> io::Result<String> {
        rpassword::prompt_password(prompt)
    }
}

/// The registry string split into the parts lookups need.
struct Registry<'a> {
    /// As the user typed it.
    raw: &'a str,
    /// `host[:port]`, scheme and path removed.
    host: &'a str,
    /// The namespace path after the host, without slashes at either end (may be empty).
    path: &'a str,
}

impl<'a> Registry<'a> {
    fn parse(raw: &'a str) -> Result<Registry<'a>, CredentialError> {
        let s = raw.trim();
        let s = s
            .strip_prefix("https://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s);
        let (host, path) = s.split_once('/').unwrap_or((s, ""));
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CredentialError::InvalidRegistry {
                registry: raw.to_string(),
            });
        }
        Ok(Registry {
            raw,
            host,
            path: path.trim_matches('/'),
        })
    }

    /// The key docker uses in `config.json` and passes to helpers.
    fn server_address(&self) -> String {
        if canonical_host(self.host) == "index.docker.io" {
            DOCKER_HUB_KEY.to_string()
        } else {
            self.host.to_string()
        }
    }

    /// What to write to a helper's stdin, in order: docker's server address, then with
    /// `https://` (the key some tools store).
    fn helper_addresses(&self) -> Vec<String> {
        let first = self.server_address();
        let second = format!("https://{}", self.host);
        if first == second {
            vec![first]
        } else {
            vec![first, second]
        }
    }
}

/// Lower-cases a host and maps Docker Hub aliases to `index.docker.io`.
fn canonical_host(host: &str) -> String {
    let h = host.to_ascii_lowercase();
    match h.as_str() {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_string(),
        _ => h,
    }
}

/// Docker's `ConvertToHostname`: strip `http://` or `https://`, then everything from the first `/`.
fn docker_key_host(key: &str) -> &str {
    let s = key
        .strip_prefix("http://")
        .or_else(|| key.strip_prefix("https://"))
        .unwrap_or(key);
    s.split('/').next().unwrap_or(s)
}

/// The resolver's state: the things tried so far and how to prompt and run helpers.
struct Resolver<'a> {
    reg: Registry<'a>,
    env: &'a Env,
    timeout: Duration,
    tried: Vec<String>,
}

type Found = (Credential, CredentialSource);

fn resolve_with(
    registry: &str,
    opts: &CredentialOptions,
    env: &Env,
    prompter: &mut dyn Prompter,
    timeout: Duration,
) -> Result<Found, CredentialError> {
    let reg = Registry::parse(registry)?;
    let mut r = Resolver {
        reg,
        env,
        timeout,
        tried: Vec::new(),
    };

    if let Some(found) = r.try_flags(opts, prompter)? {
        return Ok(found);
    }
    if let Some(found) = r.try_docker_config(opts)? {
        return Ok(found);
    }
    if let Some(found) = r.try_auth_json()? {
        return Ok(found);
    }
    if opts.interactive {
        let username = r.prompt_username(prompter)?;
        let password = r.prompt_password(prompter, &username)?;
        return Ok((
            Credential::Basic { username, password },
            CredentialSource::Prompt,
        ));
    }
    r.tried
        .push("interactive prompt (not available: stdin or stderr is not a terminal)".into());
    Err(CredentialError::NotFound {
        registry: registry.to_string(),
        tried: r.tried,
    })
}

impl Resolver<'_> {
    fn try_flags(
        &mut self,
        opts: &CredentialOptions,
        prompter: &mut dyn Prompter,
    ) -> Result<Option<Found>, CredentialError> {
        let username = opts.username.as_deref().filter(|u| !u.is_empty());
        match (username, &opts.password) {
            (Some(u), Some(p)) => Ok(Some((
                Credential::Basic {
                    username: u.to_string(),
                    password: p.clone(),
                },
                CredentialSource::Flags,
            ))),
            (Some(u), None) => {
                if !opts.interactive {
                    return Err(CredentialError::MissingPassword {
                        username: u.to_string(),
                    });
                }
                let password = self.prompt_password(prompter, u)?;
                Ok(Some((
                    Credential::Basic {
                        username: u.to_string(),
                        password,
                    },
                    CredentialSource::Prompt,
                )))
            }
            (None, Some(p)) => {
                if !opts.interactive {
                    return Err(CredentialError::MissingUsername);
                }
                let username = self.prompt_username(prompter)?;
                Ok(Some((
                    Credential::Basic {
                        username,
                        password: p.clone(),
                    },
                    CredentialSource::Prompt,
                )))
            }
            (None, None) => {
                self.tried
                    .push("--username/--password flags (not given)".into());
                Ok(None)
            }
        }
    }

    fn prompt_username(&self, prompter: &mut dyn Prompter) -> Result<String, CredentialError> {
        let prompt = format!("Username for {}: ", self.reg.raw);
        let username = prompter
            .username(&prompt)
            .map_err(|e| self.prompt_error(e.to_string()))?;
        let username = username.trim().to_string();
        if username.is_empty() {
            return Err(self.prompt_error("no user name entered".into()));
        }
        Ok(username)
    }

    fn prompt_password(
        &self,
        prompter: &mut dyn Prompter,
        username: &str,
    ) -> Result<Secret, CredentialError> {
        let prompt = format!("Password for {username}@{}: ", self.reg.raw);
        // The io::Error holds only the OS error, never the typed input: safe to show.
        prompter
            .password(&prompt)
            .map(Secret)
            .map_err(|e| self.prompt_error(e.to_string()))
    }

    fn prompt_error(&self, why: String) -> CredentialError {
        CredentialError::Prompt {
            registry: self.reg.raw.to_string(),
            why,
        }
    }

    // ---- Docker config.json -----------------------------------------------------------------

    fn try_docker_config(
        &mut self,
        opts: &CredentialOptions,
    ) -> Result<Option<Found>, CredentialError> {
        let (path, explicit) = if let Some(p) = &opts.docker_config {
            if p.is_dir() {
                (p.join("config.json"), true)
            } else {
                (p.clone(), true)
            }
        } else if let Some(dir) = &self.env.docker_config {
            (dir.join("config.json"), false)
        } else if let Some(home) = &self.env.home {
            (home.join(".docker").join("config.json"), false)
        } else {
            self.tried
                .push("Docker config.json (no --docker-config, DOCKER_CONFIG or HOME)".into());
            return Ok(None);
        };
        let label = format!("Docker config {}", path.display());
        let Some(file) = read_config(&path, explicit, &label, &mut self.tried)? else {
            return Ok(None);
        };

        // Store selection, as docker does: credHelpers[registry], else credsStore, else the file.
        if let Some((helper, how)) = file
            .cred_helper(&self.reg)
            .map(|h| (h, "credHelpers"))
            .or_else(|| file.creds_store.clone().map(|h| (h, "credsStore")))
        {
            let found = self.try_helper(&helper, &path, how, file.find_docker_entry(&self.reg))?;
            if found.is_none() && how == "credsStore" {
                if let Some((key, entry)) = file.find_docker_entry(&self.reg) {
                    if entry_credential(entry, key, &path, true)?.is_some() {
                        self.tried.push(format!(
                            "{label}: the auths entry {key:?} has inline credentials, ignored \
                             because credsStore is set (as docker does)"
                        ));
                    }
                }
            }
            return Ok(found);
        }

        match file.find_docker_entry(&self.reg) {
            None => {
                self.tried
                    .push(format!("{label} (no auths entry for {})", self.reg.host));
                Ok(None)
            }
            Some((key, entry)) => match entry_credential(entry, key, &path, true)? {
                Some(c) => Ok(Some((c, CredentialSource::DockerConfig(path)))),
                None => {
                    let why = if entry.registrytoken {
                        "holds only a registrytoken, which ferry does not support"
                    } else {
                        "has no credentials"
                    };
                    self.tried
                        .push(format!("{label} (the auths entry {key:?} {why})"));
                    Ok(None)
                }
            },
        }
    }

    // ---- containers auth.json ---------------------------------------------------------------

    fn try_auth_json(&mut self) -> Result<Option<Found>, CredentialError> {
        let paths: Vec<PathBuf> = if let Some(p) = &self.env.registry_auth_file {
            vec![p.clone()]
        } else {
            let mut v = Vec::new();
            if let Some(xdg) = &self.env.xdg_runtime_dir {
                v.push(xdg.join("containers").join("auth.json"));
            } else if let Some(run) = default_runtime_auth_file() {
                v.push(run);
            }
            if let Some(home) = &self.env.home {
                v.push(home.join(".config").join("containers").join("auth.json"));
            }
            if v.is_empty() {
                self.tried.push(
                    "containers auth.json (no REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR or HOME)".into(),
                );
            }
            v
        };
        for path in paths {
            let label = format!("containers auth file {}", path.display());
            let Some(file) = read_config(&path, false, &label, &mut self.tried)? else {
                continue;
            };
            if let Some(helper) = file.cred_helper(&self.reg) {
                if let Some(found) = self.try_helper(&helper, &path, "credHelpers", None)? {
                    return Ok(Some(found));
                }
                continue;
            }
            match file.find_containers_entry(&self.reg) {
                None => self
                    .tried
                    .push(format!("{label} (no auths entry for {})", self.reg.host)),
                Some((key, entry)) => match entry_credential(entry, key, &path, false)? {
                    Some(c) => return Ok(Some((c, CredentialSource::AuthJson(path)))),
                    None => self.tried.push(format!(
                        "{label} (the auths entry {key:?} has no \"auth\" or \"identitytoken\")"
                    )),
                },
            }
        }
        Ok(None)
    }

    // ---- credential helpers -----------------------------------------------------------------

    /// Runs `docker-credential-<suffix> get`. `file_entry` is the `auths` entry of the same file,
    /// whose user name goes with an identity token.
    fn try_helper(
        &mut self,
        suffix: &str,
        config: &Path,
        how: &str,
        file_entry: Option<(&str, &AuthEntry)>,
    ) -> Result<Option<Found>, CredentialError> {
        if suffix.is_empty() || suffix.contains(['/', '\\', '\0']) || suffix.trim() != suffix {
            return Err(CredentialError::BadConfig {
                path: config.to_path_buf(),
                why: format!(
                    "{how} names an invalid credential helper for {}",
                    self.reg.host
                ),
            });
        }
        let helper = format!("docker-credential-{suffix}");
        let Some(exe) = find_on_path(&helper, self.env.path.as_deref()) else {
            return Err(CredentialError::HelperMissing {
                helper,
                registry: self.reg.raw.to_string(),
                config: config.to_path_buf(),
            });
        };
        let addresses = self.reg.helper_addresses();
        for address in &addresses {
            let got = run_helper_get(&exe, &helper, address, self.reg.raw, self.env, self.timeout)?;
            if let Some((username, secret)) = got {
                let source = CredentialSource::CredHelper {
                    helper,
                    config: config.to_path_buf(),
                };
                let cred = if username == TOKEN_USERNAME {
                    let username = file_entry
                        .and_then(|(_, e)| e.username.clone().or_else(|| e.auth_username()))
                        .unwrap_or_default();
                    Credential::IdentityToken {
                        username,
                        token: secret,
                    }
                } else {
                    Credential::Basic {
                        username,
                        password: secret,
                    }
                };
                return Ok(Some((cred, source)));
            }
        }
        self.tried.push(format!(
            "credential helper {helper} ({how} in {}): no credentials for {}",
            config.display(),
            addresses.join(" or ")
        ));
        Ok(None)
    }
}

/// `/run/containers/<uid>/auth.json`, used by containers tools when `XDG_RUNTIME_DIR` is unset.
fn default_runtime_auth_file() -> Option<PathBuf> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        let uid = std::fs::metadata("/proc/self").ok()?.uid();
        Some(PathBuf::from(format!("/run/containers/{uid}/auth.json")))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
