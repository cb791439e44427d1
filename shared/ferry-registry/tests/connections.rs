//! Kept-alive connections under concurrency: as many requests at once as
//! `ferry-diff` sends by default are served by at most one connection each,
//! reused from request to request, rather than closing all but a few after
//! use and paying their TCP and TLS handshakes again (ureq keeps 10 idle
//! connections unless told otherwise).

use ferry_registry::transport::TransportOptions;
use ferry_registry::{Access, Client, Target};
use ferry_store::Digest;
use ferry_testkit::fake_registry::FakeRegistry;

/// `threads` threads at once, each sending `each` HEAD requests in turn.
fn heads_at_once(client: &Client, threads: usize, each: usize) {
    let digest = Digest::sha256_of(b"a blob the registry does not have");
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..each {
                    let size = client.blob_size("repo", &digest, Access::Pull).unwrap();
                    assert_eq!(size, None);
                }
            });
        }
    });
}

#[test]
fn sixty_four_requests_at_once_never_need_more_than_sixty_four_connections() {
    let reg = FakeRegistry::start();
    let target = Target::parse(&format!("http://{}/ns", reg.addr())).unwrap();
    let client = Client::new(&target, &TransportOptions::default(), None).unwrap();
    for round in 1..=3 {
        heads_at_once(&client, 64, 4);
        let opened = reg.connections_accepted();
        assert!(
            (1..=64).contains(&opened),
            "after round {round}: {opened} connections for at most 64 requests in flight \
             (connections closed after use and opened again)"
        );
    }
}
