//! Which fetched events may run now, and how far each partition's offset may be committed.
//!
//! Like Confluent's Parallel Consumer, per partition: events of one key run strictly in order,
//! one at a time; events of different keys run in parallel up to `key_parallelism`; the committed
//! offset is the low watermark, the lowest offset not yet finished, so a commit never passes an
//! unfinished event however far later keys have run ahead. An event waiting for a retry keeps its
//! key (later events of that key wait behind it) and holds the watermark, but not other keys.
//!
//! Pure bookkeeping, no I/O: the runner feeds it records and finished work.

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::Arc,
};

use crate::meta::Record;

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Tp {
    pub(crate) topic: String,
    pub(crate) partition: i32,
}

impl Tp {
    pub(crate) fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self { topic: topic.into(), partition }
    }

    pub(crate) fn of(record: &Record) -> Self {
        Self::new(record.topic.clone(), record.partition)
    }
}

/// Events of one key are ordered; a record without a key is ordered with nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyId {
    Key(Vec<u8>),
    Unkeyed(i64),
}

impl KeyId {
    fn of(record: &Record) -> Self {
        match &record.key {
            Some(key) => Self::Key(key.clone()),
            None => Self::Unkeyed(record.offset),
        }
    }
}

/// One event and its retry state.
#[derive(Debug, Clone)]
pub(crate) struct Work {
    pub(crate) record: Arc<Record>,
    /// Attempts already made (0 before the first).
    pub(crate) attempt: u32,
    /// Not to be run before this time (ms since the epoch).
    pub(crate) not_before_ms: i64,
    /// When the first attempt failed (ms since the epoch).
    pub(crate) first_failure_ms: Option<i64>,
    /// The last failure's text.
    pub(crate) last_error: Option<String>,
    /// The partition incarnation this work belongs to; stale work of a revoked-then-reassigned
    /// partition is recognised and ignored.
    pub(crate) generation: u64,
}

impl Work {
    pub(crate) fn new(record: Record) -> Self {
        Self {
            record: Arc::new(record),
            attempt: 0,
            not_before_ms: 0,
            first_failure_ms: None,
            last_error: None,
            generation: 0,
        }
    }
}

/// How a taken event ended.
#[derive(Debug)]
pub(crate) enum Finish {
    /// Finished for good (applied, duplicate, parked, dead-lettered): its offset may be committed.
    Done,
    /// To run again as given (updated attempt, not-before time, errors); its key stays blocked.
    Again(Work),
}

#[derive(Debug, Default)]
struct KeyQueue {
    items: VecDeque<Work>,
    in_flight: bool,
}

#[derive(Debug)]
struct PartitionQueue {
    generation: u64,
    keys: HashMap<KeyId, KeyQueue>,
    /// Offsets fetched and not finished; the watermark is the first.
    pending: BTreeSet<i64>,
    /// One past the highest offset fetched.
    next_offset: Option<i64>,
    /// The highest offset finished.
    max_done: Option<i64>,
    in_flight: usize,
    draining: bool,
}

/// The per-partition queues of one consumer.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    partitions: HashMap<Tp, PartitionQueue>,
    key_parallelism: usize,
    queued: usize,
    generations: u64,
}

impl Dispatcher {
    pub(crate) fn new(key_parallelism: usize) -> Self {
        Self {
            partitions: HashMap::new(),
            key_parallelism: key_parallelism.max(1),
            queued: 0,
            generations: 0,
        }
    }

    /// Starts tracking a newly assigned partition (a no-op when already tracked).
    pub(crate) fn assign(&mut self, tp: Tp) {
        if !self.partitions.contains_key(&tp) {
            self.generations += 1;
            let queue = PartitionQueue {
                generation: self.generations,
                keys: HashMap::new(),
                pending: BTreeSet::new(),
                next_offset: None,
                max_done: None,
                in_flight: 0,
                draining: false,
            };
            self.partitions.insert(tp, queue);
        }
    }

    /// Queues a fetched event. Returns false (and drops it) when its offset was already fetched,
    /// e.g. refetched after a pause, or its partition is being revoked.
    pub(crate) fn push(&mut self, mut work: Work) -> bool {
        let tp = Tp::of(&work.record);
        self.assign(tp.clone());
        let Some(part) = self.partitions.get_mut(&tp) else { return false };
        let offset = work.record.offset;
        if part.draining || part.next_offset.is_some_and(|next| offset < next) {
            return false;
        }
        work.generation = part.generation;
        part.next_offset = Some(offset + 1);
        part.pending.insert(offset);
        part.keys.entry(KeyId::of(&work.record)).or_default().items.push_back(work);
        self.queued += 1;
        true
    }

    /// Takes up to `max` events that may run now: the head of each idle key whose not-before time
    /// has come, lowest offsets first, at most `key_parallelism` keys in flight per partition.
    pub(crate) fn take(&mut self, now_ms: i64, max: usize) -> Vec<Work> {
        let mut taken = Vec::new();
        let mut tps: Vec<&Tp> = self.partitions.keys().collect();
        tps.sort();
        let tps: Vec<Tp> = tps.into_iter().cloned().collect();
        // Lowest head offsets first across all partitions, so the oldest work (the one holding a
        // watermark back) goes first.
        let mut candidates: Vec<(i64, Tp, KeyId)> = Vec::new();
        for tp in &tps {
            let Some(part) = self.partitions.get(tp) else { continue };
            // A partition at its parallelism bound can give nothing now; skipping it here keeps
            // `take` from collecting and sorting every buffered key while all are busy, which is
            // most calls under load.
            if part.draining || part.in_flight >= self.key_parallelism {
                continue;
            }
            for (key, queue) in &part.keys {
                if let Some(head) = queue.items.front() {
                    if !queue.in_flight && head.not_before_ms <= now_ms {
                        candidates.push((head.record.offset, tp.clone(), key.clone()));
                    }
                }
            }
        }
        candidates.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        for (_, tp, key) in candidates {
            if taken.len() >= max {
                break;
            }
            let Some(part) = self.partitions.get_mut(&tp) else { continue };
            if part.in_flight >= self.key_parallelism {
                continue;
            }
            if let Some(queue) = part.keys.get_mut(&key) {
                if let Some(head) = queue.items.front() {
                    queue.in_flight = true;
                    part.in_flight += 1;
                    taken.push(head.clone());
                }
            }
        }
        taken
    }

    /// How many events could be taken now, ignoring the parallelism bound (for batch lingering).
    pub(crate) fn ready(&self, now_ms: i64) -> usize {
        self.partitions
            .values()
            .filter(|p| !p.draining)
            .flat_map(|p| p.keys.values())
            .filter(|q| !q.in_flight && q.items.front().is_some_and(|h| h.not_before_ms <= now_ms))
            .count()
    }

    /// The earliest not-before time still in the future, to wake up for.
    pub(crate) fn next_due(&self, now_ms: i64) -> Option<i64> {
        self.partitions
            .values()
            .filter(|p| !p.draining)
            .flat_map(|p| p.keys.values())
            .filter(|q| !q.in_flight)
            .filter_map(|q| q.items.front().map(|h| h.not_before_ms))
            .filter(|t| *t > now_ms)
            .min()
    }

    /// Records how a taken event ended. Work of a partition no longer tracked (revoked), or of an
    /// older incarnation of it, is ignored: its offset is not ours to commit any more.
    pub(crate) fn finish(&mut self, work: &Work, finish: Finish) {
        let tp = Tp::of(&work.record);
        let Some(part) = self.partitions.get_mut(&tp) else { return };
        if part.generation != work.generation {
            return;
        }
        let key = KeyId::of(&work.record);
        let Some(queue) = part.keys.get_mut(&key) else { return };
        let is_head = queue.items.front().is_some_and(|h| h.record.offset == work.record.offset);
        if !is_head || !queue.in_flight {
            return;
        }
        queue.in_flight = false;
        part.in_flight = part.in_flight.saturating_sub(1);
        match finish {
            Finish::Done => {
                queue.items.pop_front();
                part.pending.remove(&work.record.offset);
                part.max_done = part.max_done.max(Some(work.record.offset));
                self.queued = self.queued.saturating_sub(1);
                if queue.items.is_empty() {
                    part.keys.remove(&key);
                }
            }
            Finish::Again(mut again) => {
                again.generation = part.generation;
                if let Some(head) = queue.items.front_mut() {
                    *head = again;
                }
            }
        }
    }

    /// The offset to commit for `tp`: the lowest unfinished offset, or one past the highest
    /// fetched when all are finished; `None` before anything was fetched.
    pub(crate) fn watermark(&self, tp: &Tp) -> Option<i64> {
        let part = self.partitions.get(tp)?;
        part.pending.first().copied().or(part.next_offset)
    }

    /// Every tracked partition's watermark.
    pub(crate) fn watermarks(&self) -> Vec<(Tp, i64)> {
        let mut marks: Vec<(Tp, i64)> =
            self.partitions.keys().filter_map(|tp| self.watermark(tp).map(|w| (tp.clone(), w))).collect();
        marks.sort();
        marks
    }

    /// Begins revoking `tp`: queued events not yet started are dropped (their offsets stay
    /// pending, so the watermark never passes them), nothing new starts. Returns how many events
    /// are still in flight.
    pub(crate) fn drain(&mut self, tp: &Tp) -> usize {
        let Some(part) = self.partitions.get_mut(tp) else { return 0 };
        part.draining = true;
        let mut dropped = 0;
        for queue in part.keys.values_mut() {
            let keep = usize::from(queue.in_flight);
            while queue.items.len() > keep {
                queue.items.pop_back();
                dropped += 1;
            }
        }
        part.keys.retain(|_, q| !q.items.is_empty());
        self.queued = self.queued.saturating_sub(dropped);
        part.in_flight
    }

    /// Events of `tp` in flight.
    pub(crate) fn in_flight(&self, tp: &Tp) -> usize {
        self.partitions.get(tp).map_or(0, |p| p.in_flight)
    }

    /// Stops tracking `tp` (after a drain); whatever is still in flight is abandoned.
    pub(crate) fn remove(&mut self, tp: &Tp) {
        if let Some(part) = self.partitions.remove(tp) {
            let queued: usize = part.keys.values().map(|q| q.items.len()).sum();
            self.queued = self.queued.saturating_sub(queued);
        }
    }

    /// Shutdown: of the queued events, keeps only those the final commit needs to cover what is
    /// already applied. Key parallelism lets later keys run ahead, so events may wait below
    /// offsets already finished or in flight; committing stops at them, and after a restart the
    /// events above come back as duplicates. So per partition, events below the highest offset
    /// finished or in flight stay queued, to run, as long as their key is due by `horizon_ms`;
    /// everything else is dropped, its offsets left uncommitted. Called again as work finishes,
    /// it drops keys that have since been put off past the horizon.
    pub(crate) fn wind_down(&mut self, horizon_ms: i64) {
        let mut dropped = 0;
        for part in self.partitions.values_mut().filter(|p| !p.draining) {
            let in_flight = part.keys.values().filter(|q| q.in_flight).filter_map(|q| q.items.front());
            let limit = in_flight.map(|w| w.record.offset).max().max(part.max_done);
            for queue in part.keys.values_mut() {
                let due =
                    queue.in_flight || queue.items.front().is_some_and(|h| h.not_before_ms <= horizon_ms);
                let below =
                    queue.items.iter().take_while(|w| limit.is_some_and(|l| w.record.offset < l)).count();
                let keep = if due { below.max(usize::from(queue.in_flight)) } else { 0 };
                while queue.items.len() > keep {
                    queue.items.pop_back();
                    dropped += 1;
                }
            }
            part.keys.retain(|_, q| !q.items.is_empty());
        }
        self.queued = self.queued.saturating_sub(dropped);
    }

    /// Events fetched and not finished, across partitions.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Events in flight, across partitions.
    pub(crate) fn total_in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(partition: i32, offset: i64, key: &str) -> Work {
        Work::new(Record {
            topic: "t".into(),
            partition,
            offset,
            key: Some(key.as_bytes().to_vec()),
            payload: None,
            headers: Vec::new(),
            timestamp_ms: None,
        })
    }

    fn offsets(works: &[Work]) -> Vec<i64> {
        works.iter().map(|w| w.record.offset).collect()
    }

    fn tp(partition: i32) -> Tp {
        Tp::new("t", partition)
    }

    #[test]
    fn one_key_runs_in_order_one_at_a_time() {
        let mut d = Dispatcher::new(8);
        for offset in 0..3 {
            assert!(d.push(work(0, offset, "a")));
        }
        let first = d.take(0, 10);
        assert_eq!(offsets(&first), vec![0]);
        assert!(d.take(0, 10).is_empty(), "the key is busy");
        d.finish(&first[0], Finish::Done);
        let second = d.take(0, 10);
        assert_eq!(offsets(&second), vec![1]);
        d.finish(&second[0], Finish::Done);
        assert_eq!(offsets(&d.take(0, 10)), vec![2]);
    }

    #[test]
    fn distinct_keys_run_in_parallel_up_to_the_bound() {
        let mut d = Dispatcher::new(2);
        for (offset, key) in ["a", "b", "c", "d"].iter().enumerate() {
            d.push(work(0, offset as i64, key));
        }
        d.push(work(1, 0, "e"));
        let taken = d.take(0, 10);
        // Two keys of partition 0, and partition 1 has its own bound.
        assert_eq!(taken.len(), 3);
        assert_eq!(taken.iter().filter(|w| w.record.partition == 0).count(), 2);
        assert!(d.take(0, 10).is_empty());
        d.finish(&taken[0], Finish::Done);
        assert_eq!(d.take(0, 10).len(), 1, "one slot freed");
    }

    #[test]
    fn a_batch_holds_distinct_keys_and_respects_its_size() {
        let mut d = Dispatcher::new(100);
        for offset in 0..10 {
            d.push(work(0, offset, &format!("k{}", offset % 5)));
        }
        let batch = d.take(0, 3);
        assert_eq!(offsets(&batch), vec![0, 1, 2]);
        let rest = d.take(0, 100);
        assert_eq!(offsets(&rest), vec![3, 4], "later events of busy keys wait");
        assert_eq!(d.ready(0), 0);
    }

    #[test]
    fn the_watermark_never_passes_an_unfinished_offset() {
        let mut d = Dispatcher::new(8);
        for (offset, key) in ["slow", "b", "c"].iter().enumerate() {
            d.push(work(0, offset as i64, key));
        }
        let taken = d.take(0, 10);
        assert_eq!(d.watermark(&tp(0)), Some(0));
        // Later keys finish first: the watermark stays at the slow one.
        d.finish(&taken[2], Finish::Done);
        d.finish(&taken[1], Finish::Done);
        assert_eq!(d.watermark(&tp(0)), Some(0));
        d.finish(&taken[0], Finish::Done);
        assert_eq!(d.watermark(&tp(0)), Some(3));
    }

    #[test]
    fn a_retry_keeps_its_key_blocked_and_the_watermark_held_but_not_other_keys() {
        let mut d = Dispatcher::new(8);
        d.push(work(0, 0, "a"));
        d.push(work(0, 1, "a"));
        d.push(work(0, 2, "b"));
        let taken = d.take(0, 10);
        assert_eq!(offsets(&taken), vec![0, 2]);
        let mut again = taken[0].clone();
        again.attempt = 1;
        again.not_before_ms = 100;
        d.finish(&taken[0], Finish::Again(again));
        d.finish(&taken[1], Finish::Done);
        assert!(d.take(50, 10).is_empty(), "offset 1 waits behind the retrying offset 0");
        assert_eq!(d.next_due(50), Some(100));
        assert_eq!(d.watermark(&tp(0)), Some(0));
        let retried = d.take(100, 10);
        assert_eq!(offsets(&retried), vec![0]);
        assert_eq!(retried[0].attempt, 1);
        d.finish(&retried[0], Finish::Done);
        assert_eq!(offsets(&d.take(100, 10)), vec![1]);
    }

    #[test]
    fn winding_down_keeps_only_the_events_below_finished_work() {
        let mut d = Dispatcher::new(8);
        // Key a is slow: b and c ran ahead of its later events.
        for (offset, key) in ["a", "b", "a", "c", "a", "b", "d"].iter().enumerate() {
            d.push(work(0, offset as i64, key));
        }
        let first = d.take(0, 10);
        assert_eq!(offsets(&first), vec![0, 1, 3, 6]);
        for done in &first[1..] {
            d.finish(done, Finish::Done);
        }
        let second = d.take(0, 10);
        assert_eq!(offsets(&second), vec![5], "b's second event; a is still busy at 0");
        // Shutting down now: 2 and 4 (key a) lie below 6, finished; they stay to be run.
        d.wind_down(0);
        assert_eq!(d.queued(), 4, "0 and 5 in flight, 2 and 4 kept");
        d.finish(&first[0], Finish::Done);
        d.finish(&second[0], Finish::Done);
        assert_eq!(offsets(&d.take(0, 10)), vec![2]);
        assert_eq!(d.watermark(&tp(0)), Some(2));

        // Nothing finished ahead of a queued event: it is dropped, its offset left pending.
        let mut d = Dispatcher::new(8);
        for offset in 0..3 {
            d.push(work(0, offset, "k"));
        }
        let taken = d.take(0, 10);
        d.wind_down(0);
        d.finish(&taken[0], Finish::Done);
        assert!(d.take(0, 10).is_empty());
        assert_eq!(d.queued(), 0);
        assert_eq!(d.watermark(&tp(0)), Some(1));
    }

    #[test]
    fn winding_down_drops_keys_put_off_past_the_horizon() {
        let mut d = Dispatcher::new(8);
        d.push(work(0, 0, "late"));
        d.push(work(0, 1, "late"));
        d.push(work(0, 2, "soon"));
        d.push(work(0, 3, "soon"));
        d.push(work(0, 4, "done"));
        let taken = d.take(0, 10);
        let mut late = taken[0].clone();
        late.not_before_ms = 60_000;
        d.finish(&taken[0], Finish::Again(late));
        let mut soon = taken[1].clone();
        soon.not_before_ms = 100;
        d.finish(&taken[1], Finish::Again(soon));
        d.finish(&taken[2], Finish::Done);
        d.wind_down(1_000);
        assert_eq!(d.queued(), 2, "the late key dropped, the soon one kept to its due time");
        assert_eq!(offsets(&d.take(100, 10)), vec![2]);
        assert_eq!(d.watermark(&tp(0)), Some(0), "the dropped key's offsets stay uncommitted");
    }

    #[test]
    fn refetched_offsets_are_ignored() {
        let mut d = Dispatcher::new(8);
        assert!(d.push(work(0, 5, "a")));
        assert!(!d.push(work(0, 5, "a")));
        assert!(!d.push(work(0, 4, "b")));
        assert_eq!(d.queued(), 1);
    }

    #[test]
    fn draining_drops_queued_work_but_keeps_their_offsets_uncommitted() {
        let mut d = Dispatcher::new(8);
        d.push(work(0, 0, "a"));
        d.push(work(0, 1, "a"));
        d.push(work(0, 2, "b"));
        let taken = d.take(0, 1);
        assert_eq!(offsets(&taken), vec![0]);
        assert_eq!(d.drain(&tp(0)), 1, "offset 0 is still in flight");
        assert_eq!(d.queued(), 1);
        assert!(d.take(0, 10).is_empty(), "nothing new starts on a draining partition");
        d.finish(&taken[0], Finish::Done);
        assert_eq!(d.in_flight(&tp(0)), 0);
        assert_eq!(d.watermark(&tp(0)), Some(1), "dropped offsets 1 and 2 are not committed");
        d.remove(&tp(0));
        assert_eq!(d.watermark(&tp(0)), None);
        assert_eq!(d.queued(), 0);
    }

    #[test]
    fn stale_work_of_a_reassigned_partition_is_ignored() {
        let mut d = Dispatcher::new(8);
        d.push(work(0, 0, "a"));
        let stale = d.take(0, 1);
        d.drain(&tp(0));
        d.remove(&tp(0));
        d.push(work(0, 0, "a"));
        d.finish(&stale[0], Finish::Done);
        assert_eq!(d.watermark(&tp(0)), Some(0), "the old incarnation's finish does not count");
        assert_eq!(d.take(0, 1).len(), 1);
    }

    #[test]
    fn unkeyed_events_are_ordered_with_nothing() {
        let mut d = Dispatcher::new(8);
        for offset in 0..3 {
            let mut w = work(0, offset, "");
            Arc::make_mut(&mut w.record).key = None;
            d.push(w);
        }
        assert_eq!(d.take(0, 10).len(), 3);
    }
}
