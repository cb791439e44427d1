//! The registry argument groups, with the flags users of `bmctl push images`
//! already know: [`RegistryArgs`] (`--private-registry` plus [`AccessArgs`])
//! for ferry-push and ferry-diff; [`AccessArgs`] alone (credentials, TLS,
//! stall timeout, per host) for ferry-pack's source registries.

use std::collections::HashMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Args};
use ferry_registry::credentials::{self, CredentialOptions, CredentialSource, Env, Secret};
use ferry_registry::transport::TransportOptions;
use ferry_registry::{Client, Target};

/// Target registry, credentials, TLS.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Private registry: HOST:PORT[/NAMESPACE] (https), or http://HOST:PORT[/NAMESPACE] for plain HTTP.
    /// ferry-push takes it several times (primary and DR, one per cluster): the package is read
    /// once and pushed to every registry at once.
    #[arg(long, value_name = "HOST:PORT[/NAMESPACE]", required = true)]
    pub private_registry: Vec<String>,
    /// Credentials, TLS and timeouts of the registries.
    #[command(flatten)]
    pub access: AccessArgs,
}

/// How registries are reached: credentials, TLS, stall timeout (shared by
/// every tool that talks to registries: push and diff to the private one,
/// pack to the source registries).
#[derive(Debug, Clone, Args)]
pub struct AccessArgs {
    /// Extra CA certificate (PEM) to trust, on top of the system store (every registry
    /// without its own --cacert-for).
    #[arg(long, value_name = "CA.pem")]
    pub cacert: Option<PathBuf>,
    /// The CA certificate of one registry when several are used: HOST:PORT=CA.pem (repeatable).
    #[arg(long, value_name = "HOST:PORT=CA.pem")]
    pub cacert_for: Vec<String>,
    /// The credentials of one registry when several are used: HOST:PORT=USER:PASSWORD_FILE
    /// (the password is read from the file, never from the command line; repeatable). Registries
    /// without one use --username/--password[-stdin] if given, else the Docker config or auth.json
    /// entry for their host.
    #[arg(long, value_name = "HOST:PORT=USER:PASSWORD_FILE")]
    pub credentials_for: Vec<String>,
    /// Whether the registry needs credentials (--need-credential=false: anonymous).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub need_credential: bool,
    /// Registry user name.
    #[arg(long)]
    pub username: Option<String>,
    /// Registry password (prefer --password-stdin: command lines are visible to other users).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Docker config.json to read credentials (auths, credHelpers, credsStore) from.
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
    /// Do not verify the registry's TLS certificate (insecure; prefer --cacert).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Seconds without any byte moving before a transfer counts as stalled and is retried
    /// (after an upload's last byte, the registry gets 5 times this to answer: the end of
    /// the body may still be in socket buffers, and the registry syncs the blob).
    /// There is no total-time cap. Also the longest wait for a connection (TCP and TLS
    /// handshake): a registry that has not answered anything yet fails after this, unretried.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub stall_timeout: u64,
}

/// What to do for a registry no credential source has an entry for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithoutCredential {
    /// Prompt on a terminal, else fail listing every source tried (a private
    /// registry to push to always wants credentials).
    Fail,
    /// Go anonymous (source registries are often public; a registry that
    /// then refuses says so, naming it).
    Anonymous,
}

/// A connected client and where its credential came from.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// The target.
    pub target: Target,
    /// Where the credential came from (None: anonymous).
    pub source: Option<CredentialSource>,
    /// The CA certificate trusted for it (besides the system store), if any.
    pub cacert: Option<PathBuf>,
}

/// `HOST:PORT=VALUE` options (`--cacert-for`, `--credentials-for`) by host.
fn per_host(flag: &str, values: &[String]) -> anyhow::Result<HashMap<String, String>> {
    values
        .iter()
        .map(|v| {
            let (host, value) = v
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{flag} {v:?}: expected HOST:PORT=VALUE"))?;
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            Ok((
                host.split('/').next().unwrap_or(host).to_owned(),
                value.to_owned(),
            ))
        })
        .collect()
}

impl RegistryArgs {
    /// Connects to the one registry given (`--private-registry` once); see
    /// [`RegistryArgs::connect_all`].
    pub fn connect(
        &self,
        log: impl Fn(&str) + Send + Sync + 'static,
    ) -> anyhow::Result<Connection> {
        if self.private_registry.len() != 1 {
            anyhow::bail!(
                "--private-registry is given {} times: this tool compares one registry at a time (run it once per registry)",
                self.private_registry.len()
            );
        }
        let log = Arc::new(log);
        let mut all = self.connect_all(move |_, msg| log(msg))?;
        Ok(all.remove(0))
    }

    /// Parses every target, resolves each one's credentials and CA, and builds
    /// a client for each. `log(host, message)` receives retry messages
    /// (already redacted).
    pub fn connect_all(
        &self,
        log: impl Fn(&str, &str) + Send + Sync + 'static,
    ) -> anyhow::Result<Vec<Connection>> {
        let targets = self
            .private_registry
            .iter()
            .map(|r| Target::parse(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.access.connect(
            targets,
            "one of the --private-registry hosts",
            WithoutCredential::Fail,
            log,
        )
    }
}

impl AccessArgs {
    /// Resolves each target's credentials (`--credentials-for`, else
    /// `--username`/`--password[-stdin]`, else Docker config / auth.json)
    /// and CA (`--cacert-for`, else `--cacert`), and builds a client for
    /// each. `hosts_are` says what the targets are, for the error about a
    /// `--cacert-for`/`--credentials-for` host that is none of them;
    /// `log(host, message)` receives retry messages (already redacted).
    pub fn connect(
        &self,
        targets: Vec<Target>,
        hosts_are: &str,
        without: WithoutCredential,
        log: impl Fn(&str, &str) + Send + Sync + 'static,
    ) -> anyhow::Result<Vec<Connection>> {
        let log = Arc::new(log);
        let cacert_for = per_host("--cacert-for", &self.cacert_for)?;
        let credentials_for = per_host("--credentials-for", &self.credentials_for)?;
        for host in cacert_for.keys().chain(credentials_for.keys()) {
            if !targets.iter().any(|t| &t.host == host) {
                anyhow::bail!("{host} is not {hosts_are}");
            }
        }
        // The shared password is read once, for every registry that uses it.
        let mut shared_password: Option<Secret> = self.password.clone().map(Secret::new);
        if self.need_credential && self.password_stdin {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the password from stdin")?;
            shared_password = Some(Secret::new(s.trim_end_matches(['\n', '\r']).to_owned()));
        }
        let mut connections = Vec::new();
        for target in targets {
            let (credential, source) = if self.need_credential {
                let (username, password) = match credentials_for.get(&target.host) {
                    Some(spec) => {
                        let (user, file) = spec.split_once(':').ok_or_else(|| {
                            anyhow::anyhow!(
                                "--credentials-for {}={spec}: expected USER:PASSWORD_FILE",
                                target.host
                            )
                        })?;
                        let password = std::fs::read_to_string(file).with_context(|| {
                            format!("reading the password for {} from {file}", target.host)
                        })?;
                        (
                            Some(user.to_owned()),
                            Some(Secret::new(
                                password.trim_end_matches(['\n', '\r']).to_owned(),
                            )),
                        )
                    }
                    None => (self.username.clone(), shared_password.clone()),
                };
                let opts = CredentialOptions {
                    username,
                    password,
                    docker_config: self.docker_config.clone(),
                    interactive: without == WithoutCredential::Fail
                        && std::io::stdin().is_terminal()
                        && std::io::stderr().is_terminal(),
                };
                match credentials::resolve(&target.host, &opts, &Env::from_process()) {
                    Ok((c, s)) => (Some(c), Some(s)),
                    Err(credentials::CredentialError::NotFound { .. })
                        if without == WithoutCredential::Anonymous =>
                    {
                        (None, None)
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                (None, None)
            };
            let cacert = cacert_for
                .get(&target.host)
                .map(PathBuf::from)
                .or_else(|| self.cacert.clone());
            let transport = TransportOptions {
                cacert: cacert.clone(),
                insecure_skip_tls_verify: self.insecure_skip_tls_verify,
                stall_timeout: Duration::from_secs(self.stall_timeout.max(1)),
            };
            let host = target.host.clone();
            let log = log.clone();
            let client = Client::new(&target, &transport, credential)?
                .with_retry_log(move |msg| log(&host, msg));
            connections.push(Connection {
                client,
                target,
                source,
                cacert,
            });
        }
        Ok(connections)
    }
}

/// Opens a push/diff source (a store in place, or a package staged once),
/// with a progress bar on a TTY and notices on stderr unless `quiet`.
pub fn open_source(
    tool: &str,
    source: &std::path::Path,
    staging: Option<&std::path::Path>,
    threads: u32,
    quiet: bool,
) -> anyhow::Result<ferry_package::stage::Source> {
    let size = std::fs::metadata(source).map(|m| m.len()).unwrap_or(0);
    let bar = crate::progress::ByteProgress::start("staging", size, !quiet);
    let opened =
        ferry_package::stage::open_source(source, staging, threads, bar.counter(), &|msg| {
            if !quiet {
                eprintln!("{tool}: {msg}");
            }
        });
    bar.finish();
    opened.map_err(|e| crate::exit::about(source, e))
}
