//! Which failures are worth another attempt, and how long to wait before it.

use std::{
    hash::{BuildHasher, Hasher},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// 408 and 429 say "later"; 5xx says "this server, now": all may succeed on retry or on another
/// URL. Every other 4xx is the registry's final word on this request.
pub(crate) fn status_is_retryable(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Connection failures and timeouts, and bodies cut off mid-read; never a malformed request.
pub(crate) fn error_is_retryable(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// Exponential backoff with jitter in the upper half, so a herd of clients spreads out while
/// each still waits at least half the nominal delay.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The wait before retry round `round` (0 for the first retry).
    pub(crate) fn delay(&self, round: u32) -> Duration {
        let factor = 1u32.checked_shl(round.min(20)).unwrap_or(u32::MAX);
        let nominal = self.base.saturating_mul(factor).min(self.max);
        let half = nominal / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 { 0 } else { random_u64() % spread };
        half + Duration::from_nanos(jitter)
    }
}

/// A cheap random number from std's randomly keyed hasher; jitter needs no better.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(status_is_retryable(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 409, 422] {
            assert!(!status_is_retryable(status), "{status}");
        }
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(1) };
        for round in 0..40 {
            let nominal =
                Duration::from_millis(100).saturating_mul(1 << round.min(20)).min(Duration::from_secs(1));
            let d = b.delay(round);
            assert!(d >= nominal / 2 && d <= nominal, "round {round}: {d:?} vs {nominal:?}");
        }
        let distinct: std::collections::HashSet<Duration> = (0..20).map(|_| b.delay(3)).collect();
        assert!(distinct.len() > 1, "no jitter");
        let zero = Backoff { base: Duration::ZERO, max: Duration::ZERO };
        assert_eq!(zero.delay(5), Duration::ZERO);
    }

    #[tokio::test]
    async fn connection_errors_are_retryable() {
        // A port nothing listens on: bind, learn the port, drop the listener.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = reqwest::get(format!("http://127.0.0.1:{port}/")).await.unwrap_err();
        assert!(error_is_retryable(&err), "{err:?}");
    }
}
