//! Which fetched events may run now, and how far each partition's offset may be committed.
//!
//! Like Confluent's Parallel Consumer, per partition: events of one key run strictly in order;
//! different keys run in parallel, up to `key_parallelism` keys in flight per partition; the
//! committed offset is the low watermark, the lowest offset not yet finished, so a commit never
//! passes an unfinished event however far later keys have run ahead. An event waiting for a retry
//! keeps its key (later events of that key wait behind it) and holds the watermark, but not other
//! keys.
//!
//! A batch takes a key's whole run of due events at once, so several events of one key may share
//! a batch (in order); the batch reports each event's verdict in that order. Idle keys wait in a
//! ready set ordered by their head offset, or in a timer set ordered by their head's due time, so
//! taking, finishing and asking what is due cost the same however many keys are buffered.
//!
//! Pure bookkeeping, no I/O: the runner feeds it records and finished work.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
};

use crate::{meta::Record, FastMap};

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
    /// Set when taken: an earlier event of this key waits in the retry path, so this one must
    /// queue behind it there.
    pub(crate) held_back: bool,
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
            held_back: false,
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
    /// Not attempted, because an earlier event of its key in the same batch did not finish: it
    /// stays queued, in place.
    Skipped,
}

#[derive(Debug, Default)]
struct KeyQueue {
    items: VecDeque<Work>,
    /// How many items at the front are taken by a batch (0 = idle).
    taken: usize,
}

#[derive(Debug)]
struct PartitionQueue {
    generation: u64,
    keys: FastMap<KeyId, KeyQueue>,
    /// Idle keys whose head is due, by head offset.
    ready: BTreeMap<i64, KeyId>,
    /// Idle keys whose head waits for a time, by (due time, head offset).
    timers: BTreeMap<(i64, i64), KeyId>,
    /// Offsets fetched and not finished; the watermark is the first.
    pending: BTreeSet<i64>,
    /// One past the highest offset fetched.
    next_offset: Option<i64>,
    /// The highest offset finished.
    max_done: Option<i64>,
    /// Keys in flight.
    in_flight: usize,
    draining: bool,
}

impl PartitionQueue {
    /// Files an idle key under its head: ready, or waiting for the head's due time.
    fn schedule(&mut self, key: KeyId) {
        let Some(queue) = self.keys.get(&key) else { return };
        match queue.items.front() {
            None => {
                self.keys.remove(&key);
            }
            Some(head) if head.not_before_ms > 0 => {
                self.timers.insert((head.not_before_ms, head.record.offset), key);
            }
            Some(head) => {
                self.ready.insert(head.record.offset, key);
            }
        }
    }

    /// Moves keys whose head came due to the ready set.
    fn promote(&mut self, now_ms: i64) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let ((_, offset), key) = entry.remove_entry();
            self.ready.insert(offset, key);
        }
    }

    /// Rebuilds the ready and timer sets after items were dropped.
    fn reschedule_all(&mut self) {
        self.ready.clear();
        self.timers.clear();
        self.keys.retain(|_, q| !q.items.is_empty());
        let idle: Vec<KeyId> =
            self.keys.iter().filter(|(_, q)| q.taken == 0).map(|(k, _)| k.clone()).collect();
        for key in idle {
            self.schedule(key);
        }
    }
}

/// The per-partition queues of one consumer.
#[derive(Debug)]
pub(crate) struct Dispatcher {
    partitions: FastMap<Tp, PartitionQueue>,
    /// Partitions in the order `take` visits them, starting after the last one it took from.
    order: Vec<Tp>,
    cursor: usize,
    key_parallelism: usize,
    queued: usize,
    generations: u64,
}

impl Dispatcher {
    pub(crate) fn new(key_parallelism: usize) -> Self {
        Self {
            partitions: FastMap::default(),
            order: Vec::new(),
            cursor: 0,
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
                keys: FastMap::default(),
                ready: BTreeMap::new(),
                timers: BTreeMap::new(),
                pending: BTreeSet::new(),
                next_offset: None,
                max_done: None,
                in_flight: 0,
                draining: false,
            };
            self.order.push(tp.clone());
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
        let key = KeyId::of(&work.record);
        let queue = part.keys.entry(key.clone()).or_default();
        let new_idle = queue.items.is_empty() && queue.taken == 0;
        queue.items.push_back(work);
        self.queued += 1;
        if new_idle {
            part.schedule(key);
        }
        true
    }

    /// Takes up to `max` events that may run now: for each idle key whose head is due (lowest
    /// head offsets first within a partition, partitions in turn), its run of due events in
    /// order, at most `key_parallelism` keys in flight per partition.
    pub(crate) fn take(&mut self, now_ms: i64, max: usize) -> Vec<Work> {
        let mut taken = Vec::new();
        let count = self.order.len();
        for i in 0..count {
            if taken.len() >= max {
                break;
            }
            let tp = &self.order[(self.cursor + i) % count];
            let Some(part) = self.partitions.get_mut(tp) else { continue };
            if part.draining {
                continue;
            }
            part.promote(now_ms);
            while taken.len() < max && part.in_flight < self.key_parallelism {
                let Some((_, key)) = part.ready.pop_first() else { break };
                let Some(queue) = part.keys.get_mut(&key) else { continue };
                let before = taken.len();
                for item in &queue.items {
                    let due = item.not_before_ms <= now_ms || taken.len() == before;
                    if taken.len() >= max || !due {
                        break;
                    }
                    taken.push(item.clone());
                }
                queue.taken = taken.len() - before;
                if queue.taken > 0 {
                    part.in_flight += 1;
                }
            }
        }
        if count > 0 {
            self.cursor = (self.cursor + 1) % count;
        }
        taken
    }

    /// How many keys could start now, ignoring the parallelism bound (for batch lingering).
    pub(crate) fn ready(&mut self, now_ms: i64) -> usize {
        self.partitions
            .values_mut()
            .filter(|p| !p.draining)
            .map(|p| {
                p.promote(now_ms);
                p.ready.len()
            })
            .sum()
    }

    /// The earliest due time of a key waiting for one, to wake up for.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.partitions
            .values()
            .filter(|p| !p.draining)
            .filter_map(|p| p.timers.first_key_value().map(|((due, _), _)| *due))
            .min()
    }

    /// Records how a taken event ended; a batch reports its events in the order it took them.
    /// Work of a partition no longer tracked (revoked), or of an older incarnation of it, is
    /// ignored: its offset is not ours to commit any more.
    pub(crate) fn finish(&mut self, work: &Work, finish: Finish) {
        let tp = Tp::of(&work.record);
        let Some(part) = self.partitions.get_mut(&tp) else { return };
        if part.generation != work.generation {
            return;
        }
        let key = KeyId::of(&work.record);
        let Some(queue) = part.keys.get_mut(&key) else { return };
        if queue.taken == 0 {
            return;
        }
        queue.taken -= 1;
        let is_head = queue.items.front().is_some_and(|h| h.record.offset == work.record.offset);
        match finish {
            Finish::Done if is_head => {
                queue.items.pop_front();
                part.pending.remove(&work.record.offset);
                part.max_done = part.max_done.max(Some(work.record.offset));
                self.queued = self.queued.saturating_sub(1);
            }
            Finish::Again(mut again) if is_head => {
                again.generation = part.generation;
                again.held_back = false;
                if let Some(head) = queue.items.front_mut() {
                    *head = again;
                }
            }
            Finish::Done | Finish::Again(_) | Finish::Skipped => {}
        }
        if queue.taken == 0 {
            part.in_flight = part.in_flight.saturating_sub(1);
            if part.draining {
                if queue.items.is_empty() {
                    part.keys.remove(&key);
                }
            } else {
                part.schedule(key);
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
    /// pending, so the watermark never passes them), nothing new starts. Returns how many keys
    /// are still in flight.
    pub(crate) fn drain(&mut self, tp: &Tp) -> usize {
        let Some(part) = self.partitions.get_mut(tp) else { return 0 };
        part.draining = true;
        let mut dropped = 0;
        for queue in part.keys.values_mut() {
            while queue.items.len() > queue.taken {
                queue.items.pop_back();
                dropped += 1;
            }
        }
        part.reschedule_all();
        self.queued = self.queued.saturating_sub(dropped);
        part.in_flight
    }

    /// Keys of `tp` in flight.
    pub(crate) fn in_flight(&self, tp: &Tp) -> usize {
        self.partitions.get(tp).map_or(0, |p| p.in_flight)
    }

    /// Stops tracking `tp` (after a drain); whatever is still in flight is abandoned.
    pub(crate) fn remove(&mut self, tp: &Tp) {
        if let Some(part) = self.partitions.remove(tp) {
            let queued: usize = part.keys.values().map(|q| q.items.len()).sum();
            self.queued = self.queued.saturating_sub(queued);
            self.order.retain(|t| t != tp);
            self.cursor = 0;
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
            let in_flight = part
                .keys
                .values()
                .filter(|q| q.taken > 0)
                .filter_map(|q| q.items.get(q.taken - 1))
                .map(|w| w.record.offset);
            let limit = in_flight.max().max(part.max_done);
            for queue in part.keys.values_mut() {
                let due =
                    queue.taken > 0 || queue.items.front().is_some_and(|h| h.not_before_ms <= horizon_ms);
                let below =
                    queue.items.iter().take_while(|w| limit.is_some_and(|l| w.record.offset < l)).count();
                let keep = if due { below.max(queue.taken) } else { 0 };
                while queue.items.len() > keep {
                    queue.items.pop_back();
                    dropped += 1;
                }
            }
            part.reschedule_all();
        }
        self.queued = self.queued.saturating_sub(dropped);
    }

    /// Events fetched and not finished, across partitions.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }

    /// Keys in flight, across partitions.
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
    fn a_keys_run_is_taken_in_order_and_the_key_stays_busy_until_it_finishes() {
        let mut d = Dispatcher::new(8);
        for offset in 0..3 {
            assert!(d.push(work(0, offset, "a")));
        }
        let first = d.take(0, 10);
        assert_eq!(offsets(&first), vec![0, 1, 2]);
        assert!(d.push(work(0, 3, "a")));
        assert!(d.take(0, 10).is_empty(), "the key is busy");
        for w in &first[..2] {
            d.finish(w, Finish::Done);
        }
        assert!(d.take(0, 10).is_empty(), "still busy until its last taken event finishes");
        d.finish(&first[2], Finish::Done);
        assert_eq!(offsets(&d.take(0, 10)), vec![3]);
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
    fn a_batch_takes_key_runs_lowest_head_first_up_to_its_size() {
        let mut d = Dispatcher::new(100);
        for offset in 0..10 {
            d.push(work(0, offset, &format!("k{}", offset % 5)));
        }
        let batch = d.take(0, 3);
        assert_eq!(offsets(&batch), vec![0, 5, 1], "k0's run, then k1's head; the size cuts k1's run");
        let rest = d.take(0, 100);
        assert_eq!(offsets(&rest), vec![2, 7, 3, 8, 4, 9], "k1 is busy: its offset 6 waits");
        assert_eq!(d.ready(0), 0);
        d.finish(&batch[2], Finish::Done);
        assert_eq!(offsets(&d.take(0, 100)), vec![6]);
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
        assert_eq!(offsets(&taken), vec![0, 1, 2]);
        let mut again = taken[0].clone();
        again.attempt = 1;
        again.not_before_ms = 100;
        d.finish(&taken[0], Finish::Again(again));
        d.finish(&taken[1], Finish::Skipped);
        d.finish(&taken[2], Finish::Done);
        assert!(d.take(50, 10).is_empty(), "offset 1 waits behind the retrying offset 0");
        assert_eq!(d.next_due(), Some(100));
        assert_eq!(d.watermark(&tp(0)), Some(0));
        let retried = d.take(100, 10);
        assert_eq!(offsets(&retried), vec![0, 1], "the skipped event follows its retried head");
        assert_eq!(retried[0].attempt, 1);
        assert_eq!(retried[1].attempt, 0);
        d.finish(&retried[0], Finish::Done);
        d.finish(&retried[1], Finish::Done);
        assert_eq!(d.queued(), 0);
        assert_eq!(d.watermark(&tp(0)), Some(3));
    }

    #[test]
    fn a_due_time_holds_only_its_key_and_later_due_events_of_a_run_wait() {
        let mut d = Dispatcher::new(8);
        let mut later = work(0, 0, "a");
        later.not_before_ms = 500;
        d.push(later);
        d.push(work(0, 1, "b"));
        let mut b_later = work(0, 2, "b");
        b_later.not_before_ms = 300;
        d.push(b_later);
        assert_eq!(d.next_due(), Some(500));
        let taken = d.take(0, 10);
        assert_eq!(offsets(&taken), vec![1], "a is not due; b's run stops at its not-yet-due event");
        d.finish(&taken[0], Finish::Done);
        assert_eq!(d.next_due(), Some(300));
        assert_eq!(offsets(&d.take(300, 10)), vec![2]);
        assert_eq!(offsets(&d.take(500, 10)), vec![0]);
    }

    #[test]
    fn winding_down_keeps_only_the_events_below_finished_work() {
        let mut d = Dispatcher::new(8);
        // Key a is slow: b, c and d ran ahead of its later events.
        d.push(work(0, 0, "a"));
        let slow = d.take(0, 10);
        for (offset, key) in ["b", "a", "c", "a", "b", "d"].iter().enumerate() {
            d.push(work(0, offset as i64 + 1, key));
        }
        let ahead = d.take(0, 10);
        assert_eq!(offsets(&ahead), vec![1, 5, 3, 6], "a is still busy at 0");
        for done in &ahead {
            d.finish(done, Finish::Done);
        }
        // Shutting down now: 2 and 4 (key a) lie below 6, finished; they stay to be run.
        d.wind_down(0);
        assert_eq!(d.queued(), 3, "0 in flight, 2 and 4 kept");
        d.finish(&slow[0], Finish::Done);
        assert_eq!(offsets(&d.take(0, 10)), vec![2, 4]);
        assert_eq!(d.watermark(&tp(0)), Some(2));

        // Nothing finished ahead of a queued event: it is dropped, its offset left pending.
        let mut d = Dispatcher::new(8);
        d.push(work(0, 0, "k"));
        let taken = d.take(0, 10);
        d.push(work(0, 1, "k"));
        d.push(work(0, 2, "k"));
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
        assert_eq!(offsets(&taken), vec![0, 1, 2, 3, 4]);
        let mut late = taken[0].clone();
        late.not_before_ms = 60_000;
        d.finish(&taken[0], Finish::Again(late));
        d.finish(&taken[1], Finish::Skipped);
        let mut soon = taken[2].clone();
        soon.not_before_ms = 100;
        d.finish(&taken[2], Finish::Again(soon));
        d.finish(&taken[3], Finish::Skipped);
        d.finish(&taken[4], Finish::Done);
        d.wind_down(1_000);
        assert_eq!(d.queued(), 2, "the late key dropped, the soon one kept to its due time");
        assert!(d.take(99, 10).is_empty());
        assert_eq!(offsets(&d.take(100, 10)), vec![2, 3]);
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
        assert_eq!(d.drain(&tp(0)), 1, "key a is still in flight");
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

    #[test]
    fn partitions_take_turns_filling_batches() {
        let mut d = Dispatcher::new(100);
        for offset in 0..4 {
            d.push(work(0, offset, &format!("p0-{offset}")));
            d.push(work(1, offset, &format!("p1-{offset}")));
        }
        let first = d.take(0, 2);
        let second = d.take(0, 2);
        assert_ne!(first[0].record.partition, second[0].record.partition, "{first:?} {second:?}");
    }
}
