//! Pushing through the fault-injecting proxy (`ferry_testkit::faults`): the
//! address the proxy forwards to, and ferry-push aimed at the proxy instead of
//! the registry behind it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use ferry_testkit::faults::FaultProxy;
use ferry_testkit::registry::Registry;

use crate::{bin, run, without_proxies, Run};

/// The address of a testkit registry on the loopback interface: the upstream
/// a `FaultProxy` in front of it forwards to.
pub fn upstream(reg: &Registry) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], reg.port()))
}

/// `ferry-push --source SOURCE --private-registry http://PROXY/ns EXTRA`
/// (anonymous; proxy variables of the environment removed). A package is
/// streamed unless EXTRA stages it.
pub fn push_through(proxy: &FaultProxy, source: &Path, ns: &str, extra: &[&str]) -> Run {
    run(without_proxies(
        Command::new(bin("ferry-push"))
            .arg("--source")
            .arg(source)
            .args([
                "--private-registry",
                &format!("http://{}/{ns}", proxy.addr()),
                "--need-credential=false",
            ])
            .args(extra),
    ))
}
