//! Running `docker-credential-<suffix> get` with a timeout, without ever echoing its output.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{
    CredentialError, Env, Secret, HELPER_MESSAGE_MAX, HELPER_NOT_FOUND, HELPER_OUTPUT_MAX,
};

/// Finds an executable file called `name` in the directories of `path` (empty entries skipped).
pub(super) fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

pub(super) fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Runs `<exe> get` with `address` on stdin. `Ok(None)` when the helper has no credentials.
pub(super) fn run_helper_get(
    exe: &Path,
    helper: &str,
    address: &str,
    registry: &str,
    env: &Env,
    timeout: Duration,
) -> Result<Option<(String, Secret)>, CredentialError> {
    let mut cmd = Command::new(exe);
    cmd.arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match &env.path {
        Some(p) => cmd.env("PATH", p),
        None => cmd.env_remove("PATH"),
    };
    let mut child = spawn(&mut cmd).map_err(|source| CredentialError::HelperSpawn {
        helper: helper.to_string(),
        path: exe.to_path_buf(),
        source,
    })?;
    let deadline = Instant::now() + timeout;
    let timed_out = || CredentialError::HelperTimeout {
        helper: helper.to_string(),
        registry: registry.to_string(),
        seconds: timeout.as_secs(),
    };

    // The address is a few bytes: it fits in the pipe buffer, so this cannot block. A helper
    // that exits without reading gives EPIPE, which is fine.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(address.as_bytes());
    }

    // Read both pipes on threads so a chatty helper cannot fill one and stall; a grandchild that
    // keeps a pipe open must not hang us either, hence the channel with a deadline.
    let (tx, rx) = mpsc::channel::<(bool, Vec<u8>)>();
    for (is_stdout, pipe) in [
        (
            true,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            false,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(HELPER_OUTPUT_MAX).read_to_end(&mut buf);
            }
            let _ = tx.send((is_stdout, buf));
        });
    }
    drop(tx);

    let status = match wait_until(&mut child, deadline) {
        Some(s) => s,
        None => {
            // Kill by the child's own PID (Child::kill), never by name.
            let _ = child.kill();
            let _ = child.wait();
            return Err(timed_out());
        }
    };
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        // Allow a moment past the deadline for pipes to drain after a timely exit.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        match rx.recv_timeout(left) {
            Ok((true, b)) => stdout = Some(b),
            Ok((false, b)) => stderr = Some(b),
            Err(_) => return Err(timed_out()),
        }
    }
    let stdout = String::from_utf8_lossy(&stdout.unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.unwrap_or_default()).into_owned();

    if !status.success() {
        if stdout.contains(HELPER_NOT_FOUND) || stderr.contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        // Helpers print errors on stdout; never echo stdout that looks like a credentials answer.
        let message = if !stderr.trim().is_empty() {
            stderr.trim()
        } else if !stdout.trim_start().starts_with('{') {
            stdout.trim()
        } else {
            "(no error message)"
        };
        return Err(CredentialError::HelperFailed {
            helper: helper.to_string(),
            registry: registry.to_string(),
            status: status.to_string(),
            stderr: message.chars().take(HELPER_MESSAGE_MAX).collect(),
        });
    }

    let bad = |why: &str| CredentialError::HelperBadOutput {
        helper: helper.to_string(),
        registry: registry.to_string(),
        why: why.to_string(),
    };
    let value: Value =
        serde_json::from_str(stdout.trim()).map_err(|_| bad("stdout is not JSON"))?;
    let Value::Object(o) = value else {
        return Err(bad("stdout is not a JSON object"));
    };
    let field = |name: &str| match o.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(&format!("{name} is not a string"))),
    };
    let username = field("Username")?;
    let secret = field("Secret")?;
    if username.is_empty() && secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((username, Secret(secret))))
}

/// Spawns, retrying briefly on ETXTBSY: a helper script written a moment ago (by an installer,
/// or a test) can be "busy" while another thread's fork still holds its write descriptor.
pub(super) fn spawn(cmd: &mut Command) -> io::Result<Child> {
    const ETXTBSY: i32 = 26;
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e)
                if cfg!(target_os = "linux")
                    && e.raw_os_error() == Some(ETXTBSY)
                    && attempts < 20 =>
            {
                attempts += 1;
                thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Polls the child until it exits or the deadline passes.
pub(super) fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(_) => return None,
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}
