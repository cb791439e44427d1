//! A second HTTP origin for redirect tests: serves the files of a directory
//! (a registry's storage root) over plain HTTP on 127.0.0.1, the way an object
//! store or CDN serves blobs a registry redirects to, and records every request
//! it receives (method, path, headers), so a test can check what a client sent
//! to a host that is not the registry.
//!
//! Pair it with `RegistryOptions::redirect_blobs_to`: distribution's `redirect`
//! storage middleware then answers blob GET and HEAD with a 307 to
//! `http://ORIGIN/docker/registry/v2/blobs/...`.
//!
//! Invariants: listens on loopback only; serves only regular files under its
//! root (no `..`, no symlinks followed out of it); the accept thread stops and
//! is joined when the value is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request the origin received.
#[derive(Debug, Clone)]
pub struct OriginRequest {
    /// HTTP method.
    pub method: String,
    /// Request target (path).
    pub path: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Status the origin answered.
    pub status: u16,
}

impl OriginRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct Shared {
    root: Mutex<Option<PathBuf>>,
    requests: Mutex<Vec<OriginRequest>>,
    stop: AtomicBool,
}

/// A static file server on 127.0.0.1 that records its requests.
pub struct BlobOrigin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl BlobOrigin {
    /// Starts on a free loopback port, serving nothing until [`BlobOrigin::serve_from`].
    pub fn start() -> std::io::Result<BlobOrigin> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        // Each connection ends on its own (Connection: close, read timeout).
                        std::thread::spawn(move || serve(stream, &s));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(BlobOrigin {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves the files under `root` from now on.
    pub fn serve_from(&self, root: &Path) {
        *self.shared.root.lock().unwrap_or_else(|p| p.into_inner()) = Some(root.to_path_buf());
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<OriginRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for BlobOrigin {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// The file for a request path, if it names a regular file under `root`.
fn file_for(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next()?;
    let relative = Path::new(path.trim_start_matches('/'));
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(relative);
    let meta = std::fs::symlink_metadata(&full).ok()?;
    meta.file_type().is_file().then_some(full)
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let root = shared
        .root
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let file = root.as_deref().and_then(|r| file_for(r, &path));
    let status = match (&file, method.as_str()) {
        (Some(_), "GET" | "HEAD") => 200,
        (None, "GET" | "HEAD") => 404,
        _ => 405,
    };
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(OriginRequest {
            method: method.clone(),
            path,
            headers,
            status,
        });
    let mut out = write_half;
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    let length = file
        .as_ref()
        .and_then(|f| std::fs::metadata(f).ok())
        .map_or(0, |m| m.len());
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    if out.write_all(head.as_bytes()).is_err() {
        return;
    }
    if status == 200 && method == "GET" {
        if let Some(mut f) = file.and_then(|f| std::fs::File::open(f).ok()) {
            let mut buf = vec![0u8; 64 << 10];
            while let Ok(n) = f.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_under_the_root_are_served() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/data"), b"x").unwrap();
        assert!(file_for(dir.path(), "/a/data").is_some());
        assert!(file_for(dir.path(), "/a/data?x=1").is_some());
        assert!(file_for(dir.path(), "/a").is_none(), "a directory");
        assert!(file_for(dir.path(), "/a/../a/data").is_none());
        assert!(file_for(dir.path(), "/missing").is_none());
    }
}
