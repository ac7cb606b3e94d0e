//! Exponential backoff with "equal jitter", the one every retry loop of the platform uses.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff: the nominal wait doubles each retry from `initial` up to `max`, and the
/// actual wait is half of it fixed plus a random part of up to the other half ("equal jitter"),
/// so a herd of clients spreads out while each still waits at least half the nominal delay.
///
/// ```
/// use std::time::Duration;
/// use fanout_core::backoff::Backoff;
///
/// let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
/// let third = backoff.delay(2); // nominal 400 ms
/// assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The nominal wait before the first retry.
    pub initial: Duration,
    /// The nominal wait never grows past this.
    pub max: Duration,
}

impl Backoff {
    /// The wait before retry `retry` (0 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        let nominal = self.initial.saturating_mul(factor).min(self.max);
        let half = nominal / 2;
        let spread = u64::try_from((nominal - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if spread == 0 { 0 } else { rand::thread_rng().gen_range(0..=spread) };
        half + Duration::from_nanos(jitter)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn delay_grows_is_capped_and_jittered_within_its_upper_half() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        for retry in 0..40 {
            let nominal =
                Duration::from_millis(100).saturating_mul(1 << retry.min(20)).min(Duration::from_secs(1));
            let delay = backoff.delay(retry);
            assert!(delay >= nominal / 2 && delay <= nominal, "retry {retry}: {delay:?} vs {nominal:?}");
        }
        let distinct: HashSet<Duration> = (0..20).map(|_| backoff.delay(3)).collect();
        assert!(distinct.len() > 1, "no jitter");
        let zero = Backoff { initial: Duration::ZERO, max: Duration::ZERO };
        assert_eq!(zero.delay(5), Duration::ZERO);
    }
}
