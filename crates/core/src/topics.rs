//! Topic naming rules of the platform: each consumer's own retry and dead-letter topics, and the
//! record of the dead letters replayed.

/// A consumer's own retry topic for events from `topic`: `<topic>.<consumer>.retry`.
pub fn retry(topic: &str, consumer: &str) -> String {
    format!("{topic}.{consumer}.retry")
}

/// A consumer's own dead-letter topic for events from `topic`: `<topic>.<consumer>.dlq`.
pub fn dead_letter(topic: &str, consumer: &str) -> String {
    format!("{topic}.{consumer}.dlq")
}

/// What `fanout dlq replay` replayed from a consumer's dead-letter topic for `topic`:
/// `<topic>.<consumer>.dlq.replays` (compacted, one record per dead letter replayed).
pub fn dead_letter_replays(topic: &str, consumer: &str) -> String {
    format!("{}.replays", dead_letter(topic, consumer))
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_and_dead_letter_names_follow_the_convention() {
        assert_eq!(super::retry("post.published", "rewards"), "post.published.rewards.retry");
        assert_eq!(super::dead_letter("post.published", "rewards"), "post.published.rewards.dlq");
        assert_eq!(
            super::dead_letter_replays("post.published", "rewards"),
            "post.published.rewards.dlq.replays"
        );
    }
}
