//! A fault-injecting TCP proxy for end-to-end tests: sits between a client (ferry) and a real
//! registry on 127.0.0.1 and, following a seeded [`FaultPlan`], resets connections with a TCP RST
//! (`SO_LINGER` 0) after a random number of client→server bytes, stalls them, throttles them, or
//! answers chosen HTTP requests itself (503, 429 + `Retry-After`, 400, …) for a plain-HTTP
//! upstream.
//!
//! ```no_run
//! use ferry_testkit::faults::{FaultPlan, FaultProxy, HttpFault};
//! # let upstream: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
//! let plan = FaultPlan {
//!     seed: 7,
//!     reset_probability: 0.3,
//!     max_bytes_before_reset: 4 << 20,
//!     http_faults: vec![HttpFault::new(Some("POST"), "/blobs/uploads/", 503, 2)],
//!     ..FaultPlan::default()
//! };
//! let proxy = FaultProxy::start(upstream, plan)?;
//! println!("push to http://{}", proxy.addr());
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Invariants:
//! 1. Replayable: connection number `n` (in accept order, from 0) draws its fate (reset offset,
//!    stall offset) from `ChaCha8Rng(seed)` on stream `n`, so the same seed gives the same plan
//!    per connection. What a connection carries depends on the client's scheduling.
//! 2. Byte-exact: everything not deliberately faulted is forwarded unchanged and in order.
//! 3. Bounded: every thread stops when the proxy is dropped (sockets shut down, threads joined,
//!    listener closed); stalls wake up early on drop.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The proxy answers a matching HTTP request itself, `times` times, then forwards the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFault {
    /// Request method to match (`None`: any).
    pub method: Option<String>,
    /// Substring of the request target (path and query) to match.
    pub path_contains: String,
    /// Status to answer with.
    pub status: u16,
    /// `Retry-After` seconds to send, if any.
    pub retry_after_secs: Option<u64>,
    /// How many matching requests get the fault (the first ones).
    pub times: usize,
    /// Registry error code and message of the JSON body (default
    /// `UNAVAILABLE` / `injected`), e.g. Harbor's `NAME_UNKNOWN` for a missing project.
    pub error: (String, String),
}

impl HttpFault {
    /// A fault without `Retry-After`.
    pub fn new(method: Option<&str>, path_contains: &str, status: u16, times: usize) -> HttpFault {
        HttpFault {
            method: method.map(str::to_owned),
            path_contains: path_contains.to_owned(),
            status,
            retry_after_secs: None,
            times,
            error: ("UNAVAILABLE".to_owned(), "injected".to_owned()),
        }
    }

    /// The same fault answering with this registry error code and message.
    pub fn error(mut self, code: &str, message: &str) -> HttpFault {
        self.error = (code.to_owned(), message.to_owned());
        self
    }

    /// The same fault with `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> HttpFault {
        self.retry_after_secs = Some(secs);
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && target.contains(&self.path_contains)
    }
}

/// What the proxy does to connections. The default forwards everything untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Seed of every random choice (see the module invariants).
    pub seed: u64,
    /// Per connection: probability of a reset (RST) once the client has sent a number of bytes
    /// drawn uniformly from `[0, max_bytes_before_reset]`.
    pub reset_probability: f64,
    /// Upper bound of the reset (and stall) offset.
    pub max_bytes_before_reset: u64,
    /// At most this many resets over the proxy's life (`None`: unlimited).
    pub max_resets: Option<usize>,
    /// Per connection: probability of a stall once the client has sent a number of bytes drawn
    /// uniformly from `[0, max_bytes_before_reset]`: nothing is forwarded client→server for
    /// `stall_ms` (the server→client direction goes quiet too, as it waits on the request).
    pub stall_probability: f64,
    /// Length of a stall.
    pub stall_ms: u64,
    /// At most this many stalls over the proxy's life (`None`: unlimited); the budget is used
    /// when a stall happens, so `stall_probability: 1.0, max_stalls: Some(1)` stalls the first
    /// connection that reaches its stall offset.
    pub max_stalls: Option<usize>,
    /// Per connection and direction, forward at most this many bytes per second.
    pub throttle_bytes_per_sec: Option<u64>,
    /// Requests answered by the proxy itself (plain-HTTP upstream only; with an empty list the
    /// byte stream is not parsed at all, so TLS passes through).
    pub http_faults: Vec<HttpFault>,
}

impl Default for FaultPlan {
    fn default() -> FaultPlan {
        FaultPlan {
            seed: 0,
            reset_probability: 0.0,
            max_bytes_before_reset: 1 << 20,
            max_resets: None,
            stall_probability: 0.0,
            stall_ms: 0,
            max_stalls: None,
            throttle_bytes_per_sec: None,
            http_faults: Vec::new(),
        }
    }
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Client connections accepted.
    pub connections: usize,
    /// Connections reset.
    pub resets: usize,
    /// Stalls injected.
    pub stalls: usize,
    /// HTTP requests answered with an injected fault.
    pub http_faults: usize,
}

#[derive(Default)]
struct Counters {
    connections: AtomicUsize,
    resets: AtomicUsize,
    stalls: AtomicUsize,
    http_faults: AtomicUsize,
}

struct Shared {
    plan: FaultPlan,
    upstream: SocketAddr,
    stop: AtomicBool,
    counters: Counters,
    /// Remaining count per [`HttpFault`], and what each matched.
    http_left: Mutex<Vec<usize>>,
    /// Requests seen, `(method, target)`, in order (forwarded or faulted).
    requests: Mutex<Vec<(String, String)>>,
    /// Open sockets per connection, shut down on drop so that blocked threads return.
    sockets: Mutex<HashMap<u64, Vec<TcpStream>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running proxy; stopped (threads joined, listener closed) on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to `upstream` under `plan`.
    pub fn start(upstream: SocketAddr, plan: FaultPlan) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the fault proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            http_left: Mutex::new(plan.http_faults.iter().map(|f| f.times).collect()),
            plan,
            upstream,
            stop: AtomicBool::new(false),
            counters: Counters::default(),
            requests: Mutex::new(Vec::new()),
            sockets: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(listener, s))
            .context("spawning the fault proxy")?;
        Ok(FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters so far.
    pub fn stats(&self) -> FaultStats {
        let c = &self.shared.counters;
        FaultStats {
            connections: c.connections.load(Ordering::SeqCst),
            resets: c.resets.load(Ordering::SeqCst),
            stalls: c.stalls.load(Ordering::SeqCst),
            http_faults: c.http_faults.load(Ordering::SeqCst),
        }
    }

    /// HTTP requests seen (parsed only when the plan has `http_faults`): `(method, target)`.
    pub fn requests(&self) -> Vec<(String, String)> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests seen had this method and a target containing `path_contains`.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        lock(&self.shared.requests)
            .iter()
            .filter(|(m, t)| m == method && t.contains(path_contains))
            .count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for s in lock(&self.shared.sockets).drain().flat_map(|(_, v)| v) {
            let _ = s.shutdown(Shutdown::Both);
        }
        loop {
            let threads: Vec<JoinHandle<()>> = lock(&self.shared.threads).drain(..).collect();
            if threads.is_empty() {
                break;
            }
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut index: u64 = 0;
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = stream else { continue };
        shared.counters.connections.fetch_add(1, Ordering::SeqCst);
        let n = index;
        index += 1;
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fault-proxy-{n}"))
            .spawn(move || {
                let _ = handle(client, n, &s);
            });
        if let Ok(t) = spawned {
            let mut threads = lock(&shared.threads);
            threads.retain(|t| !t.is_finished());
            threads.push(t);
        }
    }
}

/// This connection's fate, drawn from the seed and its index.
struct Fate {
    reset_at: Option<u64>,
    stall_at: Option<u64>,
}

fn fate(plan: &FaultPlan, index: u64) -> Fate {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    rng.set_stream(index);
    let max = plan.max_bytes_before_reset;
    // Always draw the same number of values so a change of one probability keeps the others.
    let (r, r_at, s, s_at) = (
        rng.gen::<f64>(),
        rng.gen_range(0..=max),
        rng.gen::<f64>(),
        rng.gen_range(0..=max),
    );
    Fate {
        reset_at: (r < plan.reset_probability).then_some(r_at),
        stall_at: (s < plan.stall_probability).then_some(s_at),
    }
}

/// Sleeps `d`, waking early when the proxy stops.
fn sleep_unless_stopped(shared: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// Paces a direction to `rate` bytes per second.
struct Throttle {
    rate: Option<u64>,
    start: Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Throttle {
        Throttle {
            rate,
            start: Instant::now(),
            bytes: 0,
        }
    }

    /// Call before sending `n` more bytes: waits until they are due.
    fn account(&mut self, shared: &Shared, n: usize) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        self.bytes += n as u64;
        let due = Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        let elapsed = self.start.elapsed();
        if due > elapsed {
            sleep_unless_stopped(shared, due - elapsed);
        }
    }
}

/// The client→server side: counts bytes and applies the reset, stall and throttle.
struct Upward<'a> {
    shared: &'a Shared,
    upstream: TcpStream,
    sent: u64,
    fate: Fate,
    throttle: Throttle,
}

/// Why forwarding stopped.
enum Cut {
    /// The plan says reset now.
    Reset,
    /// An I/O error on either side.
    Io,
}

impl Upward<'_> {
    /// Forwards `data`, cutting it at the reset offset.
    fn forward(&mut self, mut data: &[u8]) -> Result<(), Cut> {
        while !data.is_empty() {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Err(Cut::Io);
            }
            // The next event offset (stall or reset) bounds this write.
            let mut n = data.len() as u64;
            if let Some(at) = self.fate.stall_at {
                if at <= self.sent {
                    self.fate.stall_at = None;
                    if take_budget(&self.shared.counters.stalls, self.shared.plan.max_stalls) {
                        sleep_unless_stopped(
                            self.shared,
                            Duration::from_millis(self.shared.plan.stall_ms),
                        );
                    }
                    continue;
                }
                n = n.min(at - self.sent);
            }
            if let Some(at) = self.fate.reset_at {
                if at <= self.sent {
                    self.fate.reset_at = None;
                    if take_budget(&self.shared.counters.resets, self.shared.plan.max_resets) {
                        return Err(Cut::Reset);
                    }
                    continue;
                }
                n = n.min(at - self.sent);
            }
            let n = (n as usize).min(64 * 1024);
            self.throttle.account(self.shared, n);
            self.upstream.write_all(&data[..n]).map_err(|_| Cut::Io)?;
            self.sent += n as u64;
            data = &data[n..];
        }
        Ok(())
    }
}

/// Takes one unit of a budget counter (`None`: unlimited); false when it is used up.
fn take_budget(counter: &AtomicUsize, max: Option<usize>) -> bool {
    match max {
        None => {
            counter.fetch_add(1, Ordering::SeqCst);
            true
        }
        Some(max) => counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                (c < max).then_some(c + 1)
            })
            .is_ok(),
    }
}

fn register(shared: &Shared, index: u64, s: &TcpStream) {
    if let Ok(c) = s.try_clone() {
        lock(&shared.sockets).entry(index).or_default().push(c);
    }
}

fn handle(client: TcpStream, index: u64, shared: &Arc<Shared>) -> io::Result<()> {
    let upstream = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5))?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    register(shared, index, &client);
    register(shared, index, &upstream);
    let resetting = Arc::new(AtomicBool::new(false));
    if shared.stop.load(Ordering::SeqCst) {
        return Ok(());
    }

    // server → client, continuously, in its own thread.
    let down = {
        let mut from = upstream.try_clone()?;
        let mut to = client.try_clone()?;
        let s = shared.clone();
        let resetting = resetting.clone();
        std::thread::Builder::new()
            .name(format!("fault-proxy-{index}-down"))
            .spawn(move || {
                let mut throttle = Throttle::new(s.plan.throttle_bytes_per_sec);
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            throttle.account(&s, n);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                // A FIN would pre-empt the RST the client must see.
                if !resetting.load(Ordering::SeqCst) {
                    let _ = to.shutdown(Shutdown::Write);
                }
            })?
    };

    let mut up = Upward {
        shared,
        upstream: upstream.try_clone()?,
        sent: 0,
        fate: fate(&shared.plan, index),
        throttle: Throttle::new(shared.plan.throttle_bytes_per_sec),
    };
    let mut reader = client.try_clone()?;
    let result = if shared.plan.http_faults.is_empty() {
        pipe(&mut reader, &mut up)
    } else {
        http(&mut reader, &client, &mut up)
    };
    match result {
        Ending::Eof => {
            // The client is done sending: let the response finish, then close.
            let _ = upstream.shutdown(Shutdown::Write);
            let _ = down.join();
        }
        Ending::Reset => {
            resetting.store(true, Ordering::SeqCst);
            shared_reset(&client, &upstream);
            let _ = down.join();
        }
        Ending::Answered => {
            // Our own answer was written: close both sides gracefully.
            let _ = upstream.shutdown(Shutdown::Both);
            let _ = down.join();
            let _ = client.shutdown(Shutdown::Write);
            drain_briefly(&client);
        }
        Ending::Error => {
            let _ = upstream.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Both);
            let _ = down.join();
        }
    }
    // Drop our registered clones too: after a reset, the RST leaves when the last one closes.
    lock(&shared.sockets).remove(&index);
    Ok(())
}

/// RST to the client (and the upstream): `SO_LINGER` 0, then the last descriptors close.
fn shared_reset(client: &TcpStream, upstream: &TcpStream) {
    let _ = socket2::SockRef::from(client).set_linger(Some(Duration::ZERO));
    let _ = socket2::SockRef::from(upstream).set_linger(Some(Duration::ZERO));
    // Unblock the server→client thread (it sends no FIN when resetting) so it drops its clones;
    // the caller then drops the registered clones and its own, and the last close sends the RST.
    let _ = upstream.shutdown(Shutdown::Read);
}

/// Reads what the client still sends for a moment, so closing does not RST our own answer.
fn drain_briefly(client: &TcpStream) {
    let _ = client.set_read_timeout(Some(Duration::from_millis(500)));
    let mut c = client;
    let mut buf = [0u8; 8192];
    let end = Instant::now() + Duration::from_secs(1);
    while Instant::now() < end {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

enum Ending {
    /// The client closed its side.
    Eof,
    /// The plan reset the connection.
    Reset,
    /// The proxy answered a request itself.
    Answered,
    /// Something failed.
    Error,
}

fn cut(c: Cut) -> Ending {
    match c {
        Cut::Reset => Ending::Reset,
        Cut::Io => Ending::Error,
    }
}

/// Raw byte forwarding client → server.
fn pipe(reader: &mut TcpStream, up: &mut Upward<'_>) -> Ending {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ending::Eof,
            Ok(n) => {
                if let Err(c) = up.forward(&buf[..n]) {
                    return cut(c);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ending::Error,
        }
    }
}

/// A parsed request head.
struct Head {
    method: String,
    target: String,
    content_length: u64,
    chunked: bool,
}

fn parse_head(head: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut request = lines.next()?.split(' ');
    let method = request.next()?.to_owned();
    let target = request.next()?.to_owned();
    let mut content_length = 0;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    Some(Head {
        method,
        target,
        content_length,
        chunked,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

/// The index of the fault this request gets, using one of its `times`.
fn take_http_fault(shared: &Shared, method: &str, target: &str) -> Option<usize> {
    let mut left = lock(&shared.http_left);
    for (i, f) in shared.plan.http_faults.iter().enumerate() {
        if left[i] > 0 && f.matches(method, target) {
            left[i] -= 1;
            return Some(i);
        }
    }
    None
}

const MAX_HEAD: usize = 64 * 1024;

/// HTTP/1.1 request parsing client → server: faults matching requests, forwards the others.
fn http(reader: &mut TcpStream, client: &TcpStream, up: &mut Upward<'_>) -> Ending {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // 1. A full request head.
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if buf.len() > MAX_HEAD {
                // Not HTTP as we know it: pass the rest through.
                if let Err(c) = up.forward(&buf) {
                    return cut(c);
                }
                return pipe(reader, up);
            }
            match reader.read(&mut chunk) {
                Ok(0) => {
                    if !buf.is_empty() {
                        if let Err(c) = up.forward(&buf) {
                            return cut(c);
                        }
                    }
                    return Ending::Eof;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ending::Error,
            }
        };
        let Some(head) = parse_head(&buf[..end]) else {
            if let Err(c) = up.forward(&buf) {
                return cut(c);
            }
            return pipe(reader, up);
        };
        lock(&up.shared.requests).push((head.method.clone(), head.target.clone()));

        // 2. Answer it ourselves?
        if let Some(i) = take_http_fault(up.shared, &head.method, &head.target) {
            let fault = &up.shared.plan.http_faults[i];
            up.shared
                .counters
                .http_faults
                .fetch_add(1, Ordering::SeqCst);
            if !head.chunked {
                // Drain (ignore) the body so that closing does not turn into a reset.
                let mut left = head.content_length;
                let have = (buf.len() - end) as u64;
                left = left.saturating_sub(have);
                let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
                while left > 0 {
                    let want = (left as usize).min(chunk.len());
                    match reader.read(&mut chunk[..want]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left -= n as u64,
                    }
                }
            }
            let body = serde_json::json!({
                "errors": [{"code": fault.error.0, "message": fault.error.1}]
            })
            .to_string();
            let mut resp = format!("HTTP/1.1 {} {}\r\n", fault.status, reason(fault.status));
            if let Some(s) = fault.retry_after_secs {
                resp.push_str(&format!("Retry-After: {s}\r\n"));
            }
            resp.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            ));
            // A response to HEAD has the headers of the body it does not carry.
            if !head.method.eq_ignore_ascii_case("HEAD") {
                resp.push_str(&body);
            }
            let mut w = client;
            let _ = w.write_all(resp.as_bytes());
            let _ = w.flush();
            return Ending::Answered;
        }

        // 3. Forward it: head, then the body.
        if head.chunked {
            // Transparent from here on: no more parsing on this connection.
            if let Err(c) = up.forward(&buf) {
                return cut(c);
            }
            return pipe(reader, up);
        }
        let body_end = end as u64 + head.content_length;
        if (buf.len() as u64) >= body_end {
            let rest = buf.split_off(body_end as usize);
            if let Err(c) = up.forward(&buf) {
                return cut(c);
            }
            buf = rest;
            continue;
        }
        if let Err(c) = up.forward(&buf) {
            return cut(c);
        }
        let mut left = body_end - buf.len() as u64;
        buf.clear();
        while left > 0 {
            let want = (left as usize).min(chunk.len());
            match reader.read(&mut chunk[..want]) {
                Ok(0) => return Ending::Eof,
                Ok(n) => {
                    left -= n as u64;
                    if let Err(c) = up.forward(&chunk[..n]) {
                        return cut(c);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Ending::Error,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// A tiny keep-alive HTTP/1.1 server: answers every request with `200` and a body naming the
    /// request target and the body length it received.
    fn http_server() -> (SocketAddr, Arc<AtomicU64>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let served = Arc::new(AtomicU64::new(0));
        let s = served.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        let end = loop {
                            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break p + 4;
                            }
                            match c.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = parse_head(&buf[..end]).expect("head");
                        let total = end + head.content_length as usize;
                        while buf.len() < total {
                            match c.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let body_bytes = &buf[end..total];
                        let sum: u64 = body_bytes.iter().map(|b| u64::from(*b)).sum();
                        let body = format!("{} {} {sum}", head.target, head.content_length);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if c.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                        s.fetch_add(1, Ordering::SeqCst);
                        buf.drain(..total);
                    }
                });
            }
        });
        (addr, served)
    }

    /// Sends one request on `c`, returns (status, body).
    fn request(c: &mut TcpStream, method: &str, target: &str, body: &[u8]) -> (u16, String) {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).expect("write head");
        c.write_all(body).expect("write body");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let h = parse_head(&buf[..p + 4]).expect("response head");
                // parse_head reads "HTTP/1.1 200 ..." as method/target.
                let status: u16 = h.target.parse().expect("status");
                let len = h.content_length as usize;
                while buf.len() < p + 4 + len {
                    let n = c.read(&mut chunk).expect("read body");
                    assert!(n > 0, "eof in body");
                    buf.extend_from_slice(&chunk[..n]);
                }
                return (
                    status,
                    String::from_utf8_lossy(&buf[p + 4..p + 4 + len]).into_owned(),
                );
            }
            let n = c.read(&mut chunk).expect("read head");
            assert!(n > 0, "eof before response");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    #[test]
    fn forwards_keep_alive_requests_in_order_and_faults_matching_ones() {
        let (upstream, served) = http_server();
        let plan = FaultPlan {
            http_faults: vec![
                HttpFault::new(Some("POST"), "/blobs/uploads/", 503, 2).retry_after(3),
                HttpFault::new(None, "/manifests/", 400, 1),
            ],
            ..FaultPlan::default()
        };
        let proxy = FaultProxy::start(upstream, plan).expect("proxy");
        let mut c = TcpStream::connect(proxy.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let big = vec![7u8; 300_000];
        assert_eq!(
            request(&mut c, "GET", "/v2/", b""),
            (200, "/v2/ 0 0".into())
        );
        assert_eq!(
            request(&mut c, "PATCH", "/v2/a/blobs/uploads/u", &big),
            (200, "/v2/a/blobs/uploads/u 300000 2100000".into())
        );
        assert_eq!(request(&mut c, "HEAD", "/v2/b", b"").0, 200);
        let (status, body) = request(&mut c, "POST", "/v2/a/blobs/uploads/", b"xyz");
        assert_eq!(status, 503);
        assert!(body.contains("injected"), "{body}");
        // Closed cleanly (FIN, not RST or a hang) right after the injected answer.
        let mut rest = Vec::new();
        let n = c
            .read_to_end(&mut rest)
            .expect("the proxy closes the connection cleanly after its own answer");
        assert_eq!(
            n,
            0,
            "bytes after the injected answer: {:?}",
            String::from_utf8_lossy(&rest)
        );

        let mut c = TcpStream::connect(proxy.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(request(&mut c, "POST", "/v2/a/blobs/uploads/", b"").0, 503);
        let mut c = TcpStream::connect(proxy.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(request(&mut c, "POST", "/v2/a/blobs/uploads/", b"").0, 200);
        assert_eq!(request(&mut c, "PUT", "/v2/a/manifests/t", b"{}").0, 400);
        let mut c = TcpStream::connect(proxy.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(request(&mut c, "PUT", "/v2/a/manifests/t", b"{}").0, 200);
        let st = proxy.stats();
        assert_eq!((st.connections, st.http_faults, st.resets), (4, 3, 0));
        // The upstream counts a request after answering it: wait for the last
        // count (bounded; a deadlock detector, not a timing assertion).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while served.load(Ordering::SeqCst) < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(served.load(Ordering::SeqCst), 5);
        assert_eq!(proxy.count_requests("PUT", "/manifests/"), 2);
    }

    /// An upstream that never answers: it reads each connection to its end (EOF or reset) and
    /// sends what it received on the channel.
    fn sink_server() -> (SocketAddr, std::sync::mpsc::Receiver<Vec<u8>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut got = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        match c.read(&mut chunk) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = tx.send(got);
                });
            }
        });
        (addr, rx)
    }

    /// Sends `data` through a new connection to `proxy`, checks the client sees an RST, and
    /// returns the bytes that reached the upstream before the reset.
    fn bytes_through_reset(
        proxy: &FaultProxy,
        upstream: &std::sync::mpsc::Receiver<Vec<u8>>,
        data: &[u8],
    ) -> Vec<u8> {
        let mut c = TcpStream::connect(proxy.addr()).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut kinds = Vec::new();
        if let Err(e) = c.write_all(data) {
            kinds.push(e.kind());
        }
        let mut buf = [0u8; 1024];
        match c.read(&mut buf) {
            Err(e) => kinds.push(e.kind()),
            Ok(n) => assert_eq!(n, 0, "no answer may come through a reset connection"),
        }
        assert!(
            kinds.contains(&io::ErrorKind::ConnectionReset),
            "the client saw no RST: {kinds:?}"
        );
        upstream
            .recv_timeout(Duration::from_secs(10))
            .expect("the upstream connection ended")
    }

    #[test]
    fn resets_are_seeded_and_seen_as_rst() {
        let plan = FaultPlan {
            seed: 42,
            reset_probability: 1.0,
            max_bytes_before_reset: 50_000,
            ..FaultPlan::default()
        };
        let fates = |p: &FaultPlan| -> Vec<(Option<u64>, Option<u64>)> {
            (0..8)
                .map(|i| {
                    let f = fate(p, i);
                    (f.reset_at, f.stall_at)
                })
                .collect()
        };
        let planned = fates(&plan);
        assert_eq!(planned, fates(&plan.clone()), "same seed, same fates");
        assert!(
            planned.iter().all(|(r, s)| r.is_some() && s.is_none()),
            "{planned:?}"
        );
        assert!(
            planned.windows(2).any(|w| w[0] != w[1]),
            "every connection draws its own fate: {planned:?}"
        );
        let other_plan = FaultPlan {
            seed: 43,
            ..plan.clone()
        };
        let other = fates(&other_plan);
        assert_ne!(planned[0], other[0], "another seed, another fate");
        assert_ne!(planned, other, "another seed, other fates");

        // A request larger than any reset offset, with bytes that reveal their position.
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut data =
            format!("PUT /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        data.extend_from_slice(&body);

        // Connection n is cut after exactly its planned offset, its prefix forwarded unchanged;
        // a second proxy with the same seed replays connection 0, another seed cuts elsewhere.
        let (upstream, received) = sink_server();
        let proxy = FaultProxy::start(upstream, plan.clone()).expect("proxy");
        for (n, (reset_at, _)) in planned.iter().take(2).enumerate() {
            let at = reset_at.unwrap() as usize;
            let got = bytes_through_reset(&proxy, &received, &data);
            assert_eq!(
                got.len(),
                at,
                "connection {n}: bytes forwarded before the RST"
            );
            assert!(got == data[..at], "connection {n}: forwarded bytes differ");
        }
        assert_eq!(proxy.stats().resets, 2);
        drop(proxy);
        for (p, want) in [(plan, planned[0].0), (other_plan, other[0].0)] {
            let proxy = FaultProxy::start(upstream, p).expect("proxy");
            let got = bytes_through_reset(&proxy, &received, &data);
            assert_eq!(Some(got.len() as u64), want, "connection 0 of a new proxy");
            assert_eq!(proxy.stats().resets, 1);
        }
    }

    #[test]
    fn stalls_and_throttles() {
        let (upstream, _) = http_server();
        let plan = FaultPlan {
            stall_probability: 1.0,
            stall_ms: 400,
            max_bytes_before_reset: 0,
            max_stalls: Some(1),
            throttle_bytes_per_sec: Some(200_000),
            ..FaultPlan::default()
        };
        let proxy = FaultProxy::start(upstream, plan).expect("proxy");
        let connect = || {
            let c = TcpStream::connect(proxy.addr()).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        };
        let t = Instant::now();
        assert_eq!(request(&mut connect(), "GET", "/a", b"").0, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(380),
            "stall: {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        assert_eq!(request(&mut connect(), "PUT", "/b", &[0u8; 100_000]).0, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(450),
            "throttle: {:?}",
            t.elapsed()
        );
        let t = Instant::now();
        assert_eq!(request(&mut connect(), "GET", "/c", b"").0, 200);
        assert!(
            t.elapsed() < Duration::from_millis(380),
            "a second stall: {:?}",
            t.elapsed()
        );
        assert_eq!(proxy.stats().stalls, 1);
    }
}
