//! ferry-push against an address where no registry answers: nothing listens
//! (connection refused), or a server accepts connections and never answers
//! (plain HTTP, and https where the TLS handshake never completes). Either is
//! reported at once, naming the address, with no retries (counted in the
//! `--json` retry events: no timing threshold).

use std::net::{TcpListener, TcpStream};
use std::process::Command;

use ferry_e2e::registry_push::generated;
use ferry_e2e::{bin, retry_events, run, without_proxies, Run};
use ferry_testkit::FixtureSpec;

/// `ferry-push --source <one small image> --private-registry TARGET --json`,
/// anonymous, with no proxy but `proxy` (for `http_proxy`) when given.
fn push_to(target: &str, extra: &[&str], proxy: Option<&str>) -> Run {
    let (_dir, layout, _) = generated(&FixtureSpec {
        seed: 18,
        images: 1,
        layers_per_image: 1,
        layer_size: 4096,
        ..Default::default()
    });
    let mut cmd = Command::new(bin("ferry-push"));
    cmd.arg("--source")
        .arg(&layout)
        .args([
            "--private-registry",
            target,
            "--need-credential=false",
            "--json",
        ])
        .args(extra);
    without_proxies(&mut cmd);
    if let Some(p) = proxy {
        cmd.env("http_proxy", p).env("no_proxy", "");
    }
    run(&mut cmd)
}

/// `127.0.0.1:PORT` where nothing listens.
fn closed_address() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").to_string()
} // closed again on return

#[test]
fn a_closed_port_is_reported_at_once_with_the_address() {
    let addr = closed_address();
    let r = push_to(&addr, &[], None);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains(&addr) && r.stderr.contains("refused the connection"),
        "{}",
        r.stderr
    );
    assert_eq!(retry_events(&r), Vec::<String>::new(), "{}", r.stderr);
}

/// Accepts every connection and never answers (the accepted streams are kept
/// open by the thread, which ends with the test process).
fn silent_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

#[test]
fn a_server_that_never_answers_fails_after_the_stall_timeout_naming_it() {
    let addr = silent_server();
    for target in [format!("http://{addr}"), addr.clone()] {
        let r = push_to(&target, &["--stall-timeout", "1"], None);
        assert_eq!(r.code, 2, "{target}: {r:?}");
        assert!(
            r.stderr.contains(&addr)
                && r.stderr.contains("within 1 s (--stall-timeout)")
                && r.stderr.contains("GET "),
            "{target}: {}",
            r.stderr
        );
        assert_eq!(
            retry_events(&r),
            Vec::<String>::new(),
            "{target}: {}",
            r.stderr
        );
    }
}

#[test]
fn a_closed_proxy_is_named_with_the_registry() {
    let (registry, proxy) = (closed_address(), closed_address());
    let r = push_to(
        &format!("http://{registry}"),
        &[],
        Some(&format!("http://{proxy}")),
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains(&registry)
            && r.stderr
                .contains(&format!("through the proxy http://{proxy}")),
        "{}",
        r.stderr
    );
    assert_eq!(retry_events(&r), Vec::<String>::new(), "{}", r.stderr);
}
