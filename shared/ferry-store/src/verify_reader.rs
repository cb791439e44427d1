//! The one verifying reader: hashes and counts every byte that passes
//! through, and at the end says whether they were the bytes asked for, as a
//! typed mismatch carrying the expected and actual values.
//!
//! Invariant: the outcome comes only from `finish` or `check`, and the size
//! (when known) is checked before the digest.

use std::io::{self, Read};

use crate::digest::{Digest, Hasher};

/// Bytes that were not the ones asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// Another size.
    #[error("expected {expected} bytes, got {actual}")]
    Size {
        /// Size asked for.
        expected: u64,
        /// Bytes read.
        actual: u64,
    },
    /// Another digest.
    #[error("expected {expected}, got {actual}")]
    Digest {
        /// Digest asked for.
        expected: Digest,
        /// Digest of the bytes read.
        actual: Digest,
    },
}

/// Wraps a reader; see the module doc.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Hasher,
    expected: Digest,
    expected_size: Option<u64>,
    count: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Verifies `inner` against `expected` (and `size`, when known).
    pub fn new(inner: R, expected: &Digest, size: Option<u64>) -> VerifyingReader<R> {
        VerifyingReader {
            inner,
            hasher: Hasher::new(expected.algorithm()),
            expected: expected.clone(),
            expected_size: size,
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads what is left to the end (discarding it), then [`Self::finish`].
    pub fn drain(mut self) -> io::Result<Result<u64, Mismatch>> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.finish())
    }

    /// The size read, or how the bytes differ from those asked for.
    pub fn finish(self) -> Result<u64, Mismatch> {
        self.check()
    }

    /// [`Self::finish`] without giving the reader up (for a reader that
    /// reports a mismatch as the error of its last read).
    pub fn check(&self) -> Result<u64, Mismatch> {
        if let Some(expected) = self.expected_size.filter(|s| *s != self.count) {
            return Err(Mismatch::Size {
                expected,
                actual: self.count,
            });
        }
        let actual = self.hasher.clone().finish();
        if actual != self.expected {
            return Err(Mismatch::Digest {
                expected: self.expected.clone(),
                actual,
            });
        }
        Ok(self.count)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_bytes_pass_and_others_are_named() {
        let d = Digest::sha256_of(b"hello");
        let ok = VerifyingReader::new(&b"hello"[..], &d, Some(5))
            .drain()
            .unwrap();
        assert_eq!(ok, Ok(5));
        let bad = VerifyingReader::new(&b"hellO"[..], &d, Some(5))
            .drain()
            .unwrap();
        assert_eq!(
            bad,
            Err(Mismatch::Digest {
                expected: d.clone(),
                actual: Digest::sha256_of(b"hellO")
            })
        );
        let short = VerifyingReader::new(&b"hell"[..], &d, Some(5))
            .drain()
            .unwrap();
        assert_eq!(
            short,
            Err(Mismatch::Size {
                expected: 5,
                actual: 4
            })
        );
        let unsized_ = VerifyingReader::new(&b"hello"[..], &d, None)
            .drain()
            .unwrap();
        assert_eq!(unsized_, Ok(5));
    }
}
