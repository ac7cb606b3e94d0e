//! Delayed delivery on Kafka: `fanout-scheduler` delivers each entry of the schedule topic at its
//! time, never before, exactly once, and keeps in memory only what is due soon.
//!
//! ```text
//!  Publisher::publish_at ──► schedule topic (compacted, key = schedule id,
//!                            partition = hash(target key), headers: target, due, not_after)
//!                                  │  consumer group: instances split the partitions
//!                                  ▼
//!   per owned partition:  read whole at assignment ─► near window (due < now + W) in memory,
//!                         ordered by (due, offset);   later entries: left in Kafka
//!                         every W/2: re-read ────────► entries now within reach join the window
//!                                  │
//!          due ≤ wall clock now    ▼   one Kafka transaction per batch
//!                         target topic ◄── the event, byte for byte (+ fanout_scheduled_for)
//!                         schedule topic ◄── tombstone of the entry
//!                         group offsets ◄── (fences a scheduler that lost its partitions)
//! ```
//!
//! * **State is Kafka's.** An entry is a record of the compacted schedule topic; delivering or
//!   cancelling it writes its tombstone. No database: a scheduler that starts (or takes over a
//!   partition) reads the partition from its beginning, `read_committed`, and holds what is due
//!   within the window `W` (`window_secs`, 10 minutes by default). It delivers nothing of a
//!   partition before reading it to its end, so no older entry can be overtaken.
//! * **Memory is bounded by the near future.** An entry due later than the window is skipped
//!   while reading; every `W/2` each partition is read again and the entries that came within
//!   reach are taken. A year-ahead entry costs disk, not memory. Tombstones and deliveries made
//!   while a re-read runs are remembered until it ends, so its older view cannot revive them.
//! * **Exactly once.** The delivered record and the entry's tombstone are written in one Kafka
//!   transaction, with the group's offsets: a crash before the commit delivers nothing (the
//!   entry is still there for the next reader), after it the tombstone is there too. A
//!   scheduler that lost its partitions in a rebalance cannot commit (the group generation
//!   fences it), and the new owner's read waits for a commit in flight (KIP-447). A transaction
//!   that fails is aborted and its batch goes again; one whose outcome is unknown (the producer
//!   failed for good, as after a broker restart) gets a new producer, and its partitions are
//!   read again whole: `read_committed` waits until the broker settles the old transaction, so
//!   what it committed keeps its tombstone and the rest is pending again.
//! * **Cancels are answered truthfully.** A dispatch transaction's first record in each schedule
//!   partition is a marker listing the entries it ends ([`fanout_core::schedule::marker`]);
//!   before writing anything else it reads the partition (`read_committed`) from where the
//!   window's view ended up to its marker, and if a cancel of one of its entries is there, it
//!   aborts and leaves that entry out. So in the partition's order a cancel either precedes the
//!   committed marker (the entry is never delivered) or follows it (it was), and the SDK's
//!   `cancel` reads that order back to say which. A reschedule is a cancel and its new entry in
//!   one transaction.
//! * **Never early.** An entry is taken only when the wall clock reads at least its due time,
//!   after a restart as before it; a clock stepped back delays deliveries, never advances them.
//!   The comparison is against this host's clock: run it with NTP, as the SDK's hosts.
//! * **Order.** One target key's entries share a schedule partition (see
//!   [`fanout_core::schedule::partition_for`]); entries due at the same instant leave in the
//!   order they were scheduled (offset order), in one transaction or in consecutive ones.
//! * **Bad entries** (no target, an unreadable time) and entries past their `not_after` go to
//!   [`fanout_core::schedule::dead_letters`] of the schedule topic with the reason in a header, in the same
//!   transaction as their tombstone: never a crash loop, never silent loss.
#![warn(missing_docs)]

mod config;
mod entry;
mod http;
mod metrics;
mod scheduler;
mod window;

pub use config::SchedulerConfig;
pub use scheduler::Scheduler;

/// Why the scheduler could not start or stopped.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// A configuration value is unusable; the message names the key.
    #[error("invalid scheduler configuration: {0}")]
    Config(String),
    /// The schedule topics could not be created or did not come up.
    #[error(transparent)]
    Topics(#[from] fanout_kafka::AdminError),
    /// The group consumer failed.
    #[error("the schedule consumer could not {operation}")]
    Consumer {
        /// What was attempted.
        operation: &'static str,
        /// Why.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// Producing failed for good (fenced: another instance owns the work now).
    #[error(transparent)]
    Produce(#[from] fanout_kafka::ProduceError),
    /// The HTTP port could not be bound.
    #[error("cannot listen on {listen}")]
    Http {
        /// The configured address.
        listen: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The poll thread could not be started.
    #[error("cannot start the poll thread")]
    Thread(#[source] std::io::Error),
}

fanout_core::debug_as_report!(SchedulerError);

impl SchedulerError {
    fn consumer(operation: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> Self {
        move |source| Self::Consumer { operation, source }
    }
}
