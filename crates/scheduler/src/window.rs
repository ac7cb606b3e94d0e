//! What one schedule partition holds in memory: its entries due within the near window, in
//! delivery order.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::entry::Entry;

/// The near window of one partition.
///
/// Entries are ordered by (due time, offset): one key's entries share a partition, so two due
/// at the same instant go out in the order they were scheduled.
#[derive(Debug)]
pub(crate) struct Window {
    /// Entries due before this (Unix ms) are held; later ones are left in Kafka.
    pub(crate) end_ms: i64,
    /// False until the partition was read to its end once after assignment: nothing of it is
    /// delivered before, so an older entry still unread cannot be overtaken.
    pub(crate) loaded: bool,
    /// True while a re-read of the partition runs (see [`Window::begin_scan`]).
    pub(crate) scanning: bool,
    /// True while a transaction of unknown outcome left some of its entries either delivered or
    /// pending: nothing of the partition is delivered until a whole re-read says which, so one
    /// key's later entries cannot overtake them.
    pub(crate) held: bool,
    /// The offset after the last record the poll thread applied: every cancel before it has
    /// already taken its entry out of the window.
    pub(crate) applied_to: i64,
    due: BTreeMap<(i64, i64), Entry>,
    ids: HashMap<String, (i64, i64)>,
    /// The entries held, counted by due second (for `fanout_scheduled_pending`).
    held_by_second: BTreeMap<i64, u32>,
    /// Entries due at or after `end_ms` (left in Kafka), counted by due minute: recounted by
    /// every whole read, plus those read live since.
    beyond_by_minute: BTreeMap<i64, u32>,
    /// Entries beyond the window read live while a scan runs, with their offsets: the scan's
    /// count replaces `beyond_by_minute`, and those it did not reach are added back.
    beyond_since_scan: Vec<(i64, i64)>,
    /// Ids delivered or cancelled since the running scan began: the scan may have read them
    /// before their tombstone existed, and must not bring them back.
    gone_since_scan: HashSet<String>,
}

impl Window {
    /// An empty window ending at `end_ms`, not loaded yet.
    pub(crate) fn new(end_ms: i64) -> Self {
        Self {
            end_ms,
            loaded: false,
            scanning: false,
            held: false,
            applied_to: 0,
            due: BTreeMap::new(),
            ids: HashMap::new(),
            held_by_second: BTreeMap::new(),
            beyond_by_minute: BTreeMap::new(),
            beyond_since_scan: Vec::new(),
            gone_since_scan: HashSet::new(),
        }
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }

    /// Takes `entry` if it is due within the window (and not known already); true when taken.
    pub(crate) fn offer(&mut self, entry: Entry) -> bool {
        if entry.due_ms() >= self.end_ms || self.ids.contains_key(&entry.id) {
            return false;
        }
        if self.scanning && self.gone_since_scan.contains(&entry.id) {
            return false;
        }
        let slot = (entry.due_ms(), entry.offset);
        self.ids.insert(entry.id.clone(), slot);
        self.due.insert(slot, entry);
        *self.held_by_second.entry(second(slot.0)).or_default() += 1;
        true
    }

    /// Counts an entry read at `offset`, due at `due_ms` at or after the window's end, which
    /// stays in Kafka.
    pub(crate) fn count_beyond(&mut self, offset: i64, due_ms: i64) {
        *self.beyond_by_minute.entry(minute(due_ms)).or_default() += 1;
        if self.scanning {
            self.beyond_since_scan.push((offset, due_ms));
        }
    }

    /// A whole read of the partition up to offset `read_to` counted `beyond` (entries due at or
    /// after the window's end, by [`minute`]): it replaces the count, plus the entries read
    /// live after the scan's end.
    pub(crate) fn recount_beyond(&mut self, beyond: BTreeMap<i64, u32>, read_to: i64) {
        self.beyond_by_minute = beyond;
        for (offset, due_ms) in std::mem::take(&mut self.beyond_since_scan) {
            if offset > read_to && due_ms >= self.end_ms {
                *self.beyond_by_minute.entry(minute(due_ms)).or_default() += 1;
            }
        }
    }

    /// Adds this partition's pending entries to `counts`, by [`bucket`] relative to `now_ms`.
    /// Held entries count by the end of their due second, those beyond the window by the start
    /// of their due minute.
    pub(crate) fn count_pending(&self, now_ms: i64, counts: &mut [i64; BUCKETS.len()]) {
        for (second, n) in &self.held_by_second {
            counts[bucket(second.saturating_add(1).saturating_mul(1_000).saturating_sub(now_ms))] +=
                i64::from(*n);
        }
        for (minute, n) in &self.beyond_by_minute {
            counts[bucket(minute.saturating_mul(60_000).saturating_sub(now_ms))] += i64::from(*n);
        }
    }

    fn uncount(&mut self, due_ms: i64) {
        if let std::collections::btree_map::Entry::Occupied(mut slot) =
            self.held_by_second.entry(second(due_ms))
        {
            *slot.get_mut() -= 1;
            if *slot.get() == 0 {
                slot.remove();
            }
        }
    }

    /// The entry `id` is gone (its tombstone was read): drops it if held.
    pub(crate) fn remove(&mut self, id: &str) {
        if let Some(slot) = self.ids.remove(id) {
            self.due.remove(&slot);
            self.uncount(slot.0);
        }
        if self.scanning {
            self.gone_since_scan.insert(id.to_owned());
        }
    }

    /// The earliest due time held.
    pub(crate) fn next_due(&self) -> Option<i64> {
        self.due.keys().next().map(|(due, _)| *due)
    }

    /// Takes up to `max` entries due at or before `now_ms`, in delivery order.
    pub(crate) fn take_due(&mut self, now_ms: i64, max: usize, into: &mut Vec<Entry>) {
        while into.len() < max {
            let Some(entry) = self.due.first_entry() else { return };
            if entry.key().0 > now_ms {
                return;
            }
            let due_ms = entry.key().0;
            let mut entry = entry.remove();
            entry.check_from.get_or_insert(self.applied_to);
            self.uncount(due_ms);
            self.ids.remove(&entry.id);
            if self.scanning {
                self.gone_since_scan.insert(entry.id.clone());
            }
            into.push(entry);
        }
    }

    /// Puts back entries whose delivery failed (the transaction was aborted), to go again.
    pub(crate) fn restore(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            self.gone_since_scan.remove(&entry.id);
            self.offer(entry);
        }
    }

    /// A re-read of the partition starts, to bring in entries due before `new_end_ms`: from now
    /// on the window reaches there (new entries read live up to it are taken), and what is
    /// delivered or cancelled meanwhile is remembered so the scan's older view cannot revive it.
    pub(crate) fn begin_scan(&mut self, new_end_ms: i64) -> i64 {
        let old_end = self.end_ms;
        self.end_ms = new_end_ms.max(old_end);
        self.scanning = true;
        self.gone_since_scan.clear();
        old_end
    }

    /// The re-read ended: takes what it found (entries due in the window's new part that are
    /// still pending).
    pub(crate) fn end_scan(&mut self, found: impl IntoIterator<Item = Entry>) -> usize {
        let mut taken = 0;
        for entry in found {
            if self.offer(entry) {
                taken += 1;
            }
        }
        self.scanning = false;
        self.gone_since_scan.clear();
        self.beyond_since_scan.clear();
        taken
    }
}

/// `fanout_scheduled_pending`'s buckets, by how far ahead an entry is due: overdue (its time
/// has passed), within a minute, ten minutes, an hour, a day, or later.
pub(crate) const BUCKETS: [&str; 6] = ["overdue", "1m", "10m", "1h", "1d", "later"];

/// The bucket of an entry due `ahead_ms` from now.
pub(crate) fn bucket(ahead_ms: i64) -> usize {
    match ahead_ms {
        ..=0 => 0,
        1..=60_000 => 1,
        60_001..=600_000 => 2,
        600_001..=3_600_000 => 3,
        3_600_001..=86_400_000 => 4,
        _ => 5,
    }
}

fn second(due_ms: i64) -> i64 {
    due_ms.div_euclid(1_000)
}

/// The minute slot entries beyond the window are counted in.
pub(crate) fn minute(due_ms: i64) -> i64 {
    due_ms.div_euclid(60_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Kind;

    fn entry(id: &str, offset: i64, due_ms: i64) -> Entry {
        Entry {
            id: id.to_owned(),
            offset,
            kind: Kind::Deliver { topic: "t".into(), key: None, due_ms, not_after_ms: None },
            payload: Some(Vec::new()),
            headers: Vec::new(),
            check_from: None,
        }
    }

    #[test]
    fn entries_come_out_by_due_time_then_schedule_order_never_early() {
        let mut window = Window::new(1_000);
        assert!(window.offer(entry("c", 3, 200)));
        assert!(window.offer(entry("b", 2, 100)));
        assert!(window.offer(entry("a", 1, 100)));
        assert!(!window.offer(entry("far", 4, 1_000)), "due at the window's end: left in Kafka");
        assert!(!window.offer(entry("a", 1, 100)), "read twice, held once");
        let mut out = Vec::new();
        window.take_due(99, 10, &mut out);
        assert!(out.is_empty(), "nothing before its time");
        window.take_due(150, 10, &mut out);
        assert_eq!(out.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        window.remove("c");
        window.take_due(10_000, 10, &mut out);
        assert_eq!(out.len(), 2, "a cancelled entry is never delivered");
    }

    #[test]
    fn pending_entries_are_counted_by_how_far_ahead_they_are_due() {
        let now = 1_000_000_000;
        let mut window = Window::new(now + 10_000);
        assert!(window.offer(entry("past", 1, now - 5_000)));
        assert!(window.offer(entry("soon", 2, now + 5_000)));
        assert!(window.offer(entry("cancelled", 3, now + 6_000)));
        window.remove("cancelled");
        window.count_beyond(4, now + 30 * 60_000);
        window.count_beyond(5, now + 5 * 3_600_000);
        window.count_beyond(6, now + 3 * 86_400_000);
        let mut counts = [0; BUCKETS.len()];
        window.count_pending(now, &mut counts);
        assert_eq!(counts, [1, 1, 0, 1, 1, 1]);
        let mut taken = Vec::new();
        window.take_due(now, 10, &mut taken);
        let mut counts = [0; BUCKETS.len()];
        window.count_pending(now, &mut counts);
        assert_eq!(counts, [0, 1, 0, 1, 1, 1], "a delivery in flight is not pending");

        // A scan recounts what lies beyond; what it did not reach (read live after its end) stays.
        window.begin_scan(now + 20_000);
        window.count_beyond(7, now + 2 * 86_400_000);
        window.count_beyond(9, now + 2 * 86_400_000);
        window.recount_beyond(BTreeMap::from([(minute(now + 90 * 60_000), 3)]), 8);
        window.end_scan(std::iter::empty());
        let mut counts = [0; BUCKETS.len()];
        window.count_pending(now, &mut counts);
        assert_eq!(counts, [0, 1, 0, 0, 3, 1]);
    }

    #[test]
    fn a_scan_does_not_revive_what_went_while_it_ran() {
        let mut window = Window::new(1_000);
        assert_eq!(window.begin_scan(2_000), 1_000);
        // Read live during the scan, then delivered; the scan saw it before its tombstone.
        assert!(window.offer(entry("live", 9, 1_500)));
        let mut out = Vec::new();
        window.take_due(1_600, 10, &mut out);
        window.remove("cancelled");
        let taken =
            window.end_scan([entry("live", 9, 1_500), entry("cancelled", 5, 1_200), entry("new", 6, 1_700)]);
        assert_eq!(taken, 1);
        out.clear();
        window.take_due(10_000, 10, &mut out);
        assert_eq!(out.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["new"]);
    }
}
