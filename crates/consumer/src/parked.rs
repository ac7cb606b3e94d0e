//! The keys held in the retry path, in memory: an event of a parked key must queue behind the
//! earlier one in the retry topic instead of overtaking it.
//!
//! The store's `fanout_parked_keys` is the durable copy, written in the batch transactions; this
//! set is read from it when partitions are assigned (another instance may have parked keys of
//! them) and then follows the changes each committed batch reports, so checking a key costs a
//! hash lookup instead of a query per event. Only the runner touches it, so a batch's changes are
//! applied after any reload that started before they were reported: the set converges on the
//! table.

use std::collections::{HashMap, HashSet};

/// A change a committed batch made to `fanout_parked_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParkChange {
    /// `event_id` of `key` (on its main topic) went into the retry path.
    Park { topic: String, key: Vec<u8>, event_id: String },
    /// `event_id` of `key` left the retry path (applied, duplicate or dead-lettered).
    Unpark { topic: String, key: Vec<u8>, event_id: String },
}

/// Parked keys by main topic, each with the ids of its events in the retry path.
#[derive(Debug, Default)]
pub(crate) struct ParkedKeys {
    by_topic: HashMap<String, HashMap<Vec<u8>, HashSet<String>>>,
}

impl ParkedKeys {
    /// The set the store holds: rows of (topic, hex key, event id). Rows whose key is not valid
    /// hex (written by hand) are skipped.
    pub(crate) fn from_rows(rows: impl IntoIterator<Item = (String, String, String)>) -> Self {
        let mut keys = Self::default();
        for (topic, key_hex, event_id) in rows {
            if let Ok(key) = hex::decode(&key_hex) {
                keys.apply(ParkChange::Park { topic, key, event_id });
            } else {
                tracing::warn!(%topic, key = %key_hex, "parked key is not hex; ignored");
            }
        }
        keys
    }

    /// True when some event of `key` on `topic` waits in the retry path.
    pub(crate) fn contains(&self, topic: &str, key: &[u8]) -> bool {
        self.by_topic.get(topic).is_some_and(|keys| keys.contains_key(key))
    }

    /// True when no key is parked (the common case: nothing to look up).
    pub(crate) fn is_empty(&self) -> bool {
        self.by_topic.is_empty()
    }

    pub(crate) fn apply(&mut self, change: ParkChange) {
        match change {
            ParkChange::Park { topic, key, event_id } => {
                self.by_topic.entry(topic).or_default().entry(key).or_default().insert(event_id);
            }
            ParkChange::Unpark { topic, key, event_id } => {
                let Some(keys) = self.by_topic.get_mut(&topic) else { return };
                if let Some(ids) = keys.get_mut(&key) {
                    ids.remove(&event_id);
                    if ids.is_empty() {
                        keys.remove(&key);
                    }
                }
                if keys.is_empty() {
                    self.by_topic.remove(&topic);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn park(key: &[u8], id: &str) -> ParkChange {
        ParkChange::Park { topic: "t".into(), key: key.to_vec(), event_id: id.into() }
    }

    fn unpark(key: &[u8], id: &str) -> ParkChange {
        ParkChange::Unpark { topic: "t".into(), key: key.to_vec(), event_id: id.into() }
    }

    #[test]
    fn a_key_stays_parked_until_its_last_event_leaves_the_retry_path() {
        let mut keys = ParkedKeys::default();
        assert!(keys.is_empty());
        keys.apply(park(b"k", "e1"));
        keys.apply(park(b"k", "e2"));
        assert!(keys.contains("t", b"k"));
        assert!(!keys.contains("other", b"k"), "keys are per topic");
        keys.apply(unpark(b"k", "e1"));
        assert!(keys.contains("t", b"k"), "e2 still waits");
        keys.apply(unpark(b"k", "e2"));
        assert!(!keys.contains("t", b"k"));
        assert!(keys.is_empty());
        keys.apply(unpark(b"k", "e3"));
        assert!(keys.is_empty(), "unparking an unknown event is a no-op");
    }

    #[test]
    fn rows_are_read_back_from_their_hex_keys() {
        let key = [0x00, 0xff, b'A'];
        let rows = vec![
            ("t".to_owned(), hex::encode(key), "e1".to_owned()),
            ("t".to_owned(), "zz".to_owned(), "e2".to_owned()),
            ("t".to_owned(), "ABCD".to_owned(), "e3".to_owned()),
        ];
        let keys = ParkedKeys::from_rows(rows);
        assert!(keys.contains("t", &key));
        assert!(keys.contains("t", &[0xab, 0xcd]));
        assert!(hex::decode("abc").is_err());
        assert!(hex::decode("zz").is_err());
    }
}
