//! The one retry layer: jittered exponential backoff for retryable failures
//! (5xx, 408, 429 honouring `Retry-After`, resets, stalls). Auth and
//! validation errors are never retried. Nothing else in ferry retries.

use std::time::Duration;

use rand::Rng;

use crate::error::RegistryError;

/// Retry policy.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// First backoff.
    pub base: Duration,
    /// Longest backoff.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(250),
            max: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `n` (1-based retry number), with ±50% jitter,
    /// or the registry's `Retry-After` when it asked for one (capped at 5 minutes).
    pub fn backoff(&self, n: u32, retry_after: Option<u64>) -> Duration {
        if let Some(secs) = retry_after {
            return Duration::from_secs(secs.min(300));
        }
        let exp = self.base.saturating_mul(1u32 << n.min(16)).min(self.max);
        let jitter = rand::thread_rng().gen_range(0.5..1.5);
        exp.mul_f64(jitter).min(self.max)
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or the
    /// attempts are used up. `on_retry` is told about each retry (for logs).
    pub fn run<T>(
        &self,
        mut op: impl FnMut(u32) -> Result<T, RegistryError>,
        mut on_retry: impl FnMut(&RegistryError, Duration),
    ) -> Result<T, RegistryError> {
        let mut attempt = 0;
        loop {
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt + 1 < self.attempts => {
                    let retry_after = match &e {
                        RegistryError::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    attempt += 1;
                    let wait = self.backoff(attempt, retry_after);
                    on_retry(&e, wait);
                    std::thread::sleep(wait);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, retry_after: Option<u64>) -> RegistryError {
        RegistryError::Status {
            method: "GET".into(),
            what: "x".into(),
            status: code,
            errors: vec![],
            retry_after,
        }
    }

    #[test]
    fn retries_5xx_and_429_but_not_4xx() {
        let fast = RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        };
        let mut calls = 0;
        let r = fast.run(
            |_| {
                calls += 1;
                if calls < 3 {
                    Err(status(503, None))
                } else {
                    Ok(calls)
                }
            },
            |_, _| {},
        );
        assert_eq!(r.unwrap(), 3);
        let mut calls = 0;
        let r: Result<(), _> = fast.run(
            |_| {
                calls += 1;
                Err(status(401, None))
            },
            |_, _| {},
        );
        assert!(r.is_err());
        assert_eq!(calls, 1, "auth errors are not retried");
        let mut calls = 0;
        let r: Result<(), _> = fast.run(
            |_| {
                calls += 1;
                Err(status(500, None))
            },
            |_, _| {},
        );
        assert!(r.is_err());
        assert_eq!(calls, 4, "gives up after the attempts");
    }

    #[test]
    fn honours_retry_after_and_caps_backoff() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, Some(7)), Duration::from_secs(7));
        for n in 1..30 {
            assert!(p.backoff(n, None) <= p.max);
        }
    }
}
