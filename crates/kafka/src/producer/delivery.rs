//! Delivery tracking on top of librdkafka's delivery callback.
//!
//! `FutureProducer` allocates a oneshot channel per record and wakes one task per record, which
//! costs roughly half the throughput of a bare `BaseProducer`. Here a record carries a small
//! ticket: a single publish still gets a oneshot, but a batch shares one tracker that wakes its
//! caller once, when the last record of the batch is acknowledged.
//!
//! The callback runs on librdkafka's polling thread for every record, so it does only what must
//! be done per record: store the ack in the record's own slot (no lock), count it, and record
//! it through metric handles resolved before sending (no label lookup).

use std::{
    sync::{
        atomic::{AtomicI64, AtomicUsize, Ordering},
        Arc, Mutex, OnceLock, PoisonError,
    },
    time::Instant,
};

use rdkafka::{
    error::KafkaError,
    message::Message,
    producer::{DeliveryResult, ProducerContext},
    ClientContext,
};
use tokio::sync::{oneshot, Notify};

use super::metrics::{ProducerMetrics, TopicMetrics};

/// Where a record landed.
pub(crate) type Ack = Result<(i32, i64), KafkaError>;

/// What travels with a record through librdkafka and comes back in the delivery callback.
pub(crate) struct Ticket {
    pub(crate) started: Instant,
    pub(crate) waiter: Waiter,
}

pub(crate) enum Waiter {
    One {
        sender: oneshot::Sender<Ack>,
        metrics: Arc<TopicMetrics>,
    },
    Batch {
        tracker: Arc<BatchTracker>,
        index: usize,
        /// The record's topic's handles when it is not the batch's topic (rare; see
        /// [`BatchTracker::metrics`]).
        metrics: Option<Arc<TopicMetrics>>,
    },
}

/// Acknowledgements of one batch: one write-once slot per record, so the polling thread stores
/// each ack without taking a lock. A slot holds only where the record landed; the rare failures
/// are kept apart, so the slots of a 1,000-record batch stay small.
pub(crate) struct BatchTracker {
    landed: Vec<OnceLock<(i32, i64)>>,
    failed: Mutex<Vec<(usize, KafkaError)>>,
    /// The metric handles of the batch's topic (its first record's), set before that record is
    /// handed over, so every delivery report of the batch finds them without a lookup.
    pub(crate) metrics: OnceLock<Arc<TopicMetrics>>,
    remaining: AtomicUsize,
    done: Notify,
}

impl BatchTracker {
    /// A tracker for `len` records.
    pub(crate) fn new(len: usize) -> Arc<Self> {
        Arc::new(Self {
            landed: (0..len).map(|_| OnceLock::new()).collect(),
            failed: Mutex::new(Vec::new()),
            metrics: OnceLock::new(),
            remaining: AtomicUsize::new(len),
            done: Notify::new(),
        })
    }

    fn complete(&self, index: usize, ack: Ack) {
        // A slot is completed once: by the delivery report, or by `fail_unsent` for a record
        // that never reached librdkafka (and so never gets a report).
        match ack {
            Ok(landed) => {
                if let Some(slot) = self.landed.get(index) {
                    let _ = slot.set(landed);
                }
            }
            Err(error) => self.failed.lock().unwrap_or_else(PoisonError::into_inner).push((index, error)),
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Marks a record that never reached librdkafka (refused at send, or not encoded) as done.
    pub(crate) fn fail_unsent(&self, index: usize, error: KafkaError) {
        self.complete(index, Err(error));
    }

    /// Waits until every record is acknowledged; then each record's ack, in record order,
    /// through `each` (so the caller builds its results without an intermediate list).
    pub(crate) async fn wait<R>(&self, mut each: impl FnMut(usize, Option<Ack>) -> R) -> Vec<R> {
        while self.remaining.load(Ordering::Acquire) > 0 {
            self.done.notified().await;
        }
        let mut failed = std::mem::take(&mut *self.failed.lock().unwrap_or_else(PoisonError::into_inner));
        failed.sort_unstable_by_key(|(index, _)| *index);
        let mut failed = failed.into_iter().peekable();
        self.landed
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let ack = match failed.next_if(|(i, _)| *i == index) {
                    Some((_, error)) => Some(Err(error)),
                    None => slot.get().map(|landed| Ok(*landed)),
                };
                each(index, ack)
            })
            .collect()
    }
}

/// librdkafka context: resolves tickets, counts in-flight records, records metrics.
pub(crate) struct DeliveryContext {
    pub(crate) metrics: ProducerMetrics,
    pub(crate) in_flight: AtomicI64,
    /// Senders waiting for queue space (see `space`).
    pub(crate) blocked: AtomicUsize,
    /// Woken on acknowledgements while a sender is blocked on a full queue, so it can retry.
    pub(crate) space: Notify,
}

impl DeliveryContext {
    pub(crate) fn new() -> Self {
        Self {
            metrics: ProducerMetrics::get(),
            in_flight: AtomicI64::new(0),
            blocked: AtomicUsize::new(0),
            space: Notify::new(),
        }
    }
}

impl DeliveryContext {
    /// Counts `n` records handed (or about to be handed) to librdkafka: in this producer's own
    /// count, and in `fanout_producer_queue_depth`, which sums every producer of the process (a
    /// service's SDK publisher and its runtime's retry/dead-letter producer alike).
    pub(crate) fn count(&self, n: i64) {
        self.in_flight.fetch_add(n, Ordering::AcqRel);
        self.metrics.queue_depth.add(n);
    }

    /// Un-counts `n` records: acknowledged, failed, or never handed over after all.
    pub(crate) fn uncount(&self, n: i64) {
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        self.metrics.queue_depth.sub(n);
    }
}

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let ack = match result {
            Ok(message) => Ok((message.partition(), message.offset())),
            Err((error, _)) => Err(error.clone()),
        };
        let elapsed = ticket.started.elapsed();
        self.uncount(1);
        // `notify_waiters` takes a lock; only pay it when a sender is actually waiting. A sender
        // that registers just after this check retries within its 10 ms timeout at worst.
        if self.blocked.load(Ordering::SeqCst) > 0 {
            self.space.notify_waiters();
        }
        match ticket.waiter {
            Waiter::One { sender, metrics } => {
                metrics.record_delivery(ack.is_ok(), elapsed);
                // The caller may have given up (dropped its future); the record is still delivered.
                let _ = sender.send(ack);
            }
            Waiter::Batch { tracker, index, metrics } => {
                if let Some(metrics) = metrics.as_deref().or_else(|| tracker.metrics.get().map(Arc::as_ref)) {
                    metrics.record_delivery(ack.is_ok(), elapsed);
                }
                tracker.complete(index, ack);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    #[tokio::test]
    async fn acks_arriving_in_any_order_come_back_in_record_order() {
        let tracker = BatchTracker::new(4);
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        tracker.complete(2, Ok((1, 20)));
        tracker.complete(3, Err(timed_out.clone()));
        tracker.fail_unsent(1, KafkaError::Canceled);
        assert_eq!(tracker.remaining.load(Ordering::Acquire), 1);
        tracker.complete(0, Ok((0, 7)));
        let acks = tracker.wait(|index, ack| (index, ack)).await;
        assert_eq!(
            acks,
            [
                (0, Some(Ok((0, 7)))),
                (1, Some(Err(KafkaError::Canceled))),
                (2, Some(Ok((1, 20)))),
                (3, Some(Err(timed_out)))
            ]
        );
    }
}
