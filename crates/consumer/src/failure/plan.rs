//! What happens after a failed attempt: in-process backoff, the retry topic, or the dead-letter
//! topic. Pure decisions; the batch executes them.
//!
//! Attempts are counted across all stages. With `attempts = 3` and `delays_ms = [d1, d2]`:
//! attempts 1–3 run in process with exponential backoff and jitter; after the third the event
//! goes to `<topic>.<consumer>.retry` and comes back after `d1` (attempt 4), then after `d2`
//! (attempt 5, waiting in memory on the retry topic's partition, so the events of its key behind
//! it in the retry topic keep their order); after that it is dead-lettered. With
//! `retry.scheduler` on, the trip to the retry topic after the third attempt goes through the
//! schedule topic, and `d1` is waited out in `fanout-scheduler` instead (see `Outbound`).

use std::time::Duration;

use fanout_core::backoff::Backoff;

use crate::config::RetrySettings;

/// The next step for an event whose attempt number `attempt` (1-based) just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Run again in this process after the delay.
    Backoff(Duration),
    /// Send to the retry topic, to run again after the delay (main topic only).
    RetryTopic(Duration),
    /// Wait in memory and run again after the delay (already on the retry topic).
    Wait(Duration),
    /// Give up: the dead-letter topic.
    DeadLetter,
}

/// Decides the step after attempt `attempt` failed. `permanent` failures dead-letter at once.
pub(crate) fn plan(settings: &RetrySettings, attempt: u32, permanent: bool, on_retry_topic: bool) -> Plan {
    if permanent {
        return Plan::DeadLetter;
    }
    if attempt < settings.attempts {
        return Plan::Backoff(backoff(settings, attempt));
    }
    let tier = (attempt - settings.attempts) as usize;
    match settings.delays_ms.get(tier) {
        Some(&delay) if on_retry_topic => Plan::Wait(Duration::from_millis(delay)),
        Some(&delay) => Plan::RetryTopic(Duration::from_millis(delay)),
        None => Plan::DeadLetter,
    }
}

/// The in-process wait after attempt `attempt` (1-based) failed.
pub(crate) fn backoff(settings: &RetrySettings, attempt: u32) -> Duration {
    Backoff {
        initial: Duration::from_millis(settings.initial_backoff_ms),
        max: Duration::from_millis(settings.max_backoff_ms),
    }
    .delay(attempt.saturating_sub(1))
}

/// Backoff for failures that are not the handler's (store or broker unreachable, registry down):
/// they never count as attempts, so an outage does not dead-letter good events.
pub(crate) fn outage_backoff(settings: &RetrySettings) -> Duration {
    backoff(settings, 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RetrySettings {
        RetrySettings {
            attempts: 3,
            initial_backoff_ms: 100,
            max_backoff_ms: 350,
            delays_ms: vec![1_000, 5_000],
            ..RetrySettings::default()
        }
    }

    #[test]
    fn attempts_go_in_process_then_through_the_tiers_then_to_the_dead_letters() {
        let s = settings();
        assert!(matches!(plan(&s, 1, false, false), Plan::Backoff(_)));
        assert!(matches!(plan(&s, 2, false, false), Plan::Backoff(_)));
        assert_eq!(plan(&s, 3, false, false), Plan::RetryTopic(Duration::from_secs(1)));
        assert_eq!(plan(&s, 3, false, true), Plan::Wait(Duration::from_secs(1)));
        assert_eq!(plan(&s, 4, false, true), Plan::Wait(Duration::from_secs(5)));
        assert_eq!(plan(&s, 5, false, true), Plan::DeadLetter);
        assert_eq!(plan(&s, 1, true, false), Plan::DeadLetter);
        let no_topic = RetrySettings { delays_ms: vec![], ..settings() };
        assert_eq!(plan(&no_topic, 3, false, false), Plan::DeadLetter);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered_within_bounds() {
        let s = settings();
        for _ in 0..100 {
            let first = backoff(&s, 1).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let second = backoff(&s, 2).as_millis();
            assert!((100..=200).contains(&second), "{second}");
            let capped = backoff(&s, 20).as_millis();
            assert!((175..=350).contains(&capped), "{capped}");
        }
    }
}
