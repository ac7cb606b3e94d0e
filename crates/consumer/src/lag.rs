//! The lag gauge, from librdkafka's statistics: one series per partition the instance owns.

use std::collections::BTreeSet;

use rdkafka::statistics::{Partition, Statistics};

use crate::{dispatch::Tp, metrics::ConsumerMetrics};

/// Sets `fanout_consumer_lag` for every partition in `assigned` that the statistics describe.
/// Partitions not owned are skipped: their series was removed on revocation and must not come
/// back.
pub(crate) fn report(
    metrics: &ConsumerMetrics,
    consumer: &str,
    assigned: &BTreeSet<Tp>,
    statistics: &Statistics,
) {
    for (topic, stats) in &statistics.topics {
        for (partition, p) in &stats.partitions {
            if !assigned.contains(&Tp::new(topic.as_str(), *partition)) {
                continue;
            }
            if let Some(lag) = lag_of(p) {
                metrics.lag.with_label_values(&[consumer, topic.as_str(), &partition.to_string()]).set(lag);
            }
        }
    }
}

/// Messages between the group's committed offset and the end of the partition. librdkafka
/// reports no lag (-1) while the group has committed nothing there: then everything from the
/// log start is still to be read (`auto.offset.reset = earliest`), and an empty partition has
/// lag 0. `None` while the end of the partition is not known yet.
pub(crate) fn lag_of(p: &Partition) -> Option<i64> {
    if p.consumer_lag >= 0 {
        return Some(p.consumer_lag);
    }
    // The last stable offset is the end a read_committed consumer (librdkafka's default) sees.
    let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
    if end < 0 {
        return None;
    }
    if p.committed_offset >= 0 {
        // Committed past the end librdkafka knows of: its end is stale, nothing is behind.
        return Some((end - p.committed_offset).max(0));
    }
    Some((end - p.lo_offset.max(0)).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(consumer_lag: i64, committed: i64, lo: i64, ls: i64, hi: i64) -> Partition {
        Partition {
            consumer_lag,
            committed_offset: committed,
            lo_offset: lo,
            ls_offset: ls,
            hi_offset: hi,
            ..Partition::default()
        }
    }

    #[test]
    fn lag_is_librdkafkas_when_known_else_from_the_log_start() {
        assert_eq!(lag_of(&partition(4, 6, 0, 10, 10)), Some(4));
        // Nothing committed yet: all from the log start is behind; an empty partition is not.
        assert_eq!(lag_of(&partition(-1, -1001, 3, 10, 10)), Some(7));
        assert_eq!(lag_of(&partition(-1, -1001, 0, 0, 0)), Some(0));
        // No stable offset reported: the high watermark.
        assert_eq!(lag_of(&partition(-1, -1001, -1, -1, 5)), Some(5));
        assert_eq!(lag_of(&partition(-1, 12, 0, 10, 10)), Some(0));
        // End unknown (not fetched yet).
        assert_eq!(lag_of(&partition(-1, -1001, -1, -1, -1)), None);
    }
}
