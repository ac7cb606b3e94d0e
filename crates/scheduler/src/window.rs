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
        true
    }

    /// The entry `id` is gone (its tombstone was read): drops it if held.
    pub(crate) fn remove(&mut self, id: &str) {
        if let Some(slot) = self.ids.remove(id) {
            self.due.remove(&slot);
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
            let mut entry = entry.remove();
            entry.check_from.get_or_insert(self.applied_to);
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
        taken
    }
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
