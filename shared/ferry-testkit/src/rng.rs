//! Seeded randomness: per-purpose sub-seeds and streaming content readers.
//!
//! Every piece of generated content draws from its own `ChaCha8Rng` seeded by
//! `sha256(seed || label)`, so adding or reordering blobs never changes the
//! bytes of unrelated blobs.

use std::io::{self, Read};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest as _, Sha256};

/// A generator for one purpose, derived from the fixture seed and a label.
pub(crate) fn rng_for(seed: u64, label: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(label.as_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// Words used for file names and text content.
pub(crate) const WORDS: &[&str] = &[
    "kubelet",
    "etcd",
    "coredns",
    "pause",
    "proxy",
    "apiserver",
    "scheduler",
    "controller",
    "anetd",
    "cilium",
    "envoy",
    "node",
    "agent",
    "metrics",
    "server",
    "operator",
    "webhook",
    "storage",
    "csi",
    "driver",
    "registry",
    "logging",
    "monitor",
    "stackdriver",
    "fluent",
    "bit",
    "prometheus",
    "alert",
    "manager",
    "gateway",
    "ingress",
    "dns",
    "network",
    "policy",
    "cert",
    "manager",
    "vsphere",
    "baremetal",
    "lvp",
    "snapshot",
    "validator",
    "preflight",
    "health",
    "check",
    "lifecycle",
    "cluster",
    "api",
    "machine",
    "bootstrap",
    "kubeadm",
    "containerd",
    "runc",
    "cni",
    "plugins",
    "iptables",
    "conntrack",
    "socat",
    "haproxy",
    "keepalived",
    "metallb",
    "speaker",
    "timeout",
    "retry",
    "enabled",
    "level",
    "path",
];

/// Exactly `remaining` random bytes: incompressible, like already-compressed data.
pub(crate) struct RandomBytes {
    rng: ChaCha8Rng,
    remaining: u64,
}

impl RandomBytes {
    pub(crate) fn new(rng: ChaCha8Rng, len: u64) -> RandomBytes {
        RandomBytes {
            rng,
            remaining: len,
        }
    }
}

impl Read for RandomBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.remaining) as usize;
        self.rng.fill_bytes(&mut buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Exactly `remaining` bytes of config-, script- and log-like text (compresses 4-8x).
pub(crate) struct TextBytes {
    rng: ChaCha8Rng,
    remaining: u64,
    line: Vec<u8>,
    pos: usize,
}

impl TextBytes {
    pub(crate) fn new(rng: ChaCha8Rng, len: u64) -> TextBytes {
        TextBytes {
            rng,
            remaining: len,
            line: Vec::with_capacity(256),
            pos: 0,
        }
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.rng.gen_range(0..WORDS.len())]
    }

    fn next_line(&mut self) {
        use std::io::Write as _;
        self.line.clear();
        self.pos = 0;
        let kind = self.rng.gen_range(0..4u8);
        let (a, b, c) = (self.word(), self.word(), self.word());
        let n: u32 = self.rng.gen_range(0..100_000);
        // Writing to a Vec cannot fail.
        let _ = match kind {
            0 => writeln!(self.line, "{a}_{b} = {c}-{n}"),
            1 => writeln!(self.line, "# {a} {b} {c}: see /etc/{a}/{b}.conf ({n})"),
            2 => writeln!(
                self.line,
                "export {}_{}=\"/usr/lib/{c}/{n}\"",
                a.to_uppercase(),
                b.to_uppercase()
            ),
            _ => writeln!(
                self.line,
                "2021-06-01T{:02}:{:02}:{:02}Z INFO {a}/{b}: {c} finished in {n}us",
                n % 24,
                n % 60,
                (n / 60) % 60
            ),
        };
    }
}

impl Read for TextBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < buf.len() && self.remaining > 0 {
            if self.pos == self.line.len() {
                self.next_line();
            }
            let n = (self.line.len() - self.pos)
                .min(buf.len() - written)
                .min(self.remaining.min(usize::MAX as u64) as usize);
            buf[written..written + n].copy_from_slice(&self.line[self.pos..self.pos + n]);
            self.pos += n;
            written += n;
            self.remaining -= n as u64;
        }
        Ok(written)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn readers_are_exact_and_deterministic() {
        let mut a = Vec::new();
        TextBytes::new(rng_for(1, "x"), 10_000)
            .read_to_end(&mut a)
            .unwrap();
        let mut b = Vec::new();
        TextBytes::new(rng_for(1, "x"), 10_000)
            .read_to_end(&mut b)
            .unwrap();
        assert_eq!(a.len(), 10_000);
        assert_eq!(a, b);
        assert_ne!(a, text(2, "x", 10_000), "another seed, other text");

        let c = random(1, "y", 777);
        assert_eq!(c.len(), 777);
        assert_eq!(c, random(1, "y", 777), "same seed and label, same bytes");
        assert_ne!(c, random(2, "y", 777), "another seed, other bytes");
        assert_ne!(c, random(1, "z", 777), "another label, other bytes");
        assert!(c.iter().any(|b| *b != c[0]), "not random: {c:?}");
        assert_ne!(rng_for(1, "x").next_u64(), rng_for(2, "x").next_u64());
    }

    fn text(seed: u64, label: &str, len: u64) -> Vec<u8> {
        let mut v = Vec::new();
        TextBytes::new(rng_for(seed, label), len)
            .read_to_end(&mut v)
            .unwrap();
        v
    }

    fn random(seed: u64, label: &str, len: u64) -> Vec<u8> {
        let mut v = Vec::new();
        RandomBytes::new(rng_for(seed, label), len)
            .read_to_end(&mut v)
            .unwrap();
        v
    }
}
