//! `ferry-test-registry`: the test harness's real registry (Debian's
//! `docker-registry`, distribution v2.8) started from a script, the same way
//! the end-to-end tests start it ([`ferry_testkit::registry::Registry`]), for
//! benchmarks that need a mode only the harness provides (Bearer tokens from
//! its in-process token issuer).
//!
//! Prints one JSON line on stdout once `GET /v2/` answers, then runs until its
//! stdin is closed; then the registry is killed (by PID) and its temporary
//! directory removed.

use std::io::Read as _;

use clap::{Parser, ValueEnum};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};

/// Start a real test registry (test and benchmark use only).
///
/// Prints {"host","url","pid","ca_cert","cert_dir","user","password","token_realm","log"} on
/// stdout (one line), then serves until stdin reaches end of file.
#[derive(Parser)]
#[command(name = "ferry-test-registry", version)]
struct Args {
    /// Transport and authentication.
    #[arg(long, value_enum, default_value = "tls-token")]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Plain HTTP, anonymous.
    Plain,
    /// HTTPS, anonymous.
    Tls,
    /// HTTPS + htpasswd (bcrypt) Basic auth.
    TlsHtpasswd,
    /// HTTPS + Bearer tokens from the harness's ES256 token issuer.
    TlsToken,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mode = match args.mode {
        Mode::Plain => RegistryMode::Plain,
        Mode::Tls => RegistryMode::Tls,
        Mode::TlsHtpasswd => RegistryMode::TlsHtpasswd,
        Mode::TlsToken => RegistryMode::TlsToken,
    };
    let registry = Registry::start(RegistryOptions::new(mode))?;
    let (user, password) = registry.credentials().unzip();
    let line = serde_json::json!({
        "host": registry.host(),
        "url": registry.base_url(),
        "pid": registry.pid(),
        "ca_cert": registry.ca_cert_path(),
        "cert_dir": registry.cert_dir(),
        "user": user,
        "password": password,
        "token_realm": registry.token_realm(),
        "log": registry.log_path(),
    });
    println!("{line}");
    // Serve until whoever started us closes our stdin (or goes away).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(registry);
    Ok(())
}
