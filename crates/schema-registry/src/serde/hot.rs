//! The decoder's hot path: the writer schemas this serde decodes with, each with its "same
//! encoding as the reader" verdict, in a small table read without locks.
//!
//! A consumer decodes long runs of payloads with the same few (schema id, reader type) pairs.
//! Looking the writer up in the shared cache costs a lock, a hash and an `Arc` clone per payload,
//! and deciding whether writer and reader encode alike costs a comparison of two canonical
//! forms: together as much as decoding a small event. Here each pair gets a write-once slot;
//! a lookup is a few plain loads, and hands out a reference, so no reference count is touched.
//!
//! Slots are never emptied. Past [`CAPACITY`] pairs, or for a slot made stale by a preload (see
//! [`HotWriters::get`]'s `epoch`), decoding takes the shared cache instead: slower, never wrong.

use std::sync::{Arc, OnceLock};

use apache_avro::Schema;

use super::schema::WriterSchema;

/// Pairs with a slot: more event types than one consumer reads.
pub(crate) const CAPACITY: usize = 16;

/// One (writer id, reader) pair and what decoding it needs.
#[derive(Debug)]
pub(crate) struct HotWriter {
    epoch: u64,
    id: u32,
    /// The reader schema's address: readers are `'static`, so an address names one schema.
    reader: usize,
    /// The writer schema.
    pub(crate) writer: Arc<WriterSchema>,
    /// Whether the reader schema encodes exactly like the writer's (no resolution needed).
    pub(crate) same_encoding: bool,
}

/// The table; filled front to back, so a lookup stops at the first empty slot.
#[derive(Debug, Default)]
pub(crate) struct HotWriters {
    slots: [OnceLock<HotWriter>; CAPACITY],
}

fn address(reader: &'static Schema) -> usize {
    reader as *const Schema as usize
}

impl HotWriters {
    /// The slot for writer `id` read as `reader`, filled while the serde's writer schemas were
    /// at `epoch` (a preload that replaces a schema starts a new epoch, which retires the slots
    /// filled before it).
    #[inline(always)]
    pub(crate) fn get(&self, epoch: u64, id: u32, reader: &'static Schema) -> Option<&HotWriter> {
        let reader = address(reader);
        for slot in &self.slots {
            let hot = slot.get()?;
            if hot.id == id && hot.reader == reader && hot.epoch == epoch {
                return Some(hot);
            }
        }
        None
    }

    /// Gives the pair a slot, unless it has one or the table is full (then it stays on the slower
    /// path). Two threads filling the same pair at the same instant may both get one; the first
    /// is found first.
    pub(crate) fn insert(
        &self,
        epoch: u64,
        id: u32,
        reader: &'static Schema,
        writer: Arc<WriterSchema>,
        same_encoding: bool,
    ) {
        let mut hot = HotWriter { epoch, id, reader: address(reader), writer, same_encoding };
        for slot in &self.slots {
            if let Some(taken) = slot.get() {
                if (taken.id, taken.reader, taken.epoch) == (hot.id, hot.reader, hot.epoch) {
                    return;
                }
                continue;
            }
            match slot.set(hot) {
                Ok(()) => return,
                // Taken (possibly by another thread just now): try the next one.
                Err(back) => hot = back,
            }
        }
    }

    /// Slots in use.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.iter().take_while(|slot| slot.get().is_some()).count()
    }
}
