//! The registry argument group shared by ferry-push and ferry-diff, with the
//! flags users of `bmctl push images` already know.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
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
    #[arg(long, value_name = "HOST:PORT[/NAMESPACE]")]
    pub private_registry: String,
    /// Extra CA certificate (PEM) to trust, on top of the system store.
    #[arg(long, value_name = "CA.pem")]
    pub cacert: Option<PathBuf>,
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
    /// There is no total-time cap.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub stall_timeout: u64,
}

/// A connected client and where its credential came from.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// The target.
    pub target: Target,
    /// Where the credential came from (None: anonymous).
    pub source: Option<CredentialSource>,
}

impl RegistryArgs {
    /// Parses the target, resolves credentials, builds a client and checks it
    /// can talk to the registry (`GET /v2/`).
    /// `log` receives retry messages (already redacted).
    pub fn connect(
        &self,
        log: impl Fn(&str) + Send + Sync + 'static,
    ) -> anyhow::Result<Connection> {
        let target = Target::parse(&self.private_registry)?;
        let (credential, source) = if self.need_credential {
            let password = match (&self.password, self.password_stdin) {
                (Some(p), _) => Some(Secret::new(p.clone())),
                (None, true) => {
                    let mut s = String::new();
                    std::io::stdin()
                        .read_to_string(&mut s)
                        .context("reading the password from stdin")?;
                    Some(Secret::new(s.trim_end_matches(['\n', '\r']).to_owned()))
                }
                (None, false) => None,
            };
            let opts = CredentialOptions {
                username: self.username.clone(),
                password,
                docker_config: self.docker_config.clone(),
                interactive: std::io::stdin().is_terminal() && std::io::stderr().is_terminal(),
            };
            let (c, s) = credentials::resolve(&target.host, &opts, &Env::from_process())?;
            (Some(c), Some(s))
        } else {
            (None, None)
        };
        let transport = TransportOptions {
            cacert: self.cacert.clone(),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            stall_timeout: Duration::from_secs(self.stall_timeout.max(1)),
        };
        let client = Client::new(&target, &transport, credential)?.with_retry_log(log);
        Ok(Connection {
            client,
            target,
            source,
        })
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
