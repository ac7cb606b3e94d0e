//! The Kafka side: one thread polls librdkafka and hands records to the runner, serves
//! rebalances (cooperative-sticky) and turns statistics into the lag gauge.
//!
//! Polling runs on its own OS thread, not on the async runtime: a revocation must block the
//! poll until the runner has drained the revoked partitions, and blocking an async worker for
//! that could starve the very batches being waited for.

use std::{
    collections::BTreeSet,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{sync_channel, SyncSender},
        Arc, Condvar, Mutex,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance},
    error::{KafkaError, KafkaResult},
    statistics::Statistics,
    types::RDKafkaErrorCode,
    ClientConfig, ClientContext, Offset, TopicPartitionList,
};
use tokio::sync::mpsc::UnboundedSender;

use fanout_kafka::{AdminError, TopicSpec};

use crate::{dispatch::Tp, meta::Record, metrics::ConsumerMetrics};

/// What the poll thread tells the runner.
#[derive(Debug)]
pub(crate) enum Inbound {
    Record(Record),
    Assigned(Vec<Tp>),
    /// Partitions are being revoked: the runner drains them and answers with the offsets to
    /// commit before they go.
    Revoke {
        tps: Vec<Tp>,
        reply: SyncSender<Vec<(Tp, i64)>>,
    },
}

/// State the poll thread, the runner and `/readyz` share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The topics the consumer reads events from (its retry topics aside).
    sources: BTreeSet<String>,
    /// Partitions currently assigned, of source and retry topics alike.
    pub(crate) assigned: Mutex<BTreeSet<Tp>>,
    /// Records sent to the runner and not yet received by it.
    pub(crate) in_channel: AtomicUsize,
    /// Records the runner holds unfinished.
    pub(crate) buffered: AtomicUsize,
    /// Set when the runner begins shutting down: fetching pauses.
    pub(crate) draining: AtomicBool,
    /// Set once the runner has committed its final offsets: revocations no longer wait for it.
    pub(crate) closing: AtomicBool,
    /// Tells the poll thread to stop.
    pub(crate) stop: AtomicBool,
    /// Set while the poll thread waits for the runner to make room.
    waiting_for_room: AtomicBool,
    room_lock: Mutex<()>,
    room: Condvar,
}

impl Shared {
    /// The state of a consumer of `sources`, owning no partition yet.
    pub(crate) fn new(sources: impl IntoIterator<Item = String>) -> Self {
        Self { sources: sources.into_iter().collect(), ..Self::default() }
    }

    /// How many partitions are assigned: (of source topics, of the consumer's retry topics).
    pub(crate) fn assigned_counts(&self) -> (usize, usize) {
        let Ok(assigned) = self.assigned.lock() else { return (0, 0) };
        let sources = assigned.iter().filter(|tp| self.sources.contains(&tp.topic)).count();
        (sources, assigned.len() - sources)
    }

    /// Records handed to the runner and not finished.
    fn held(&self) -> usize {
        self.in_channel.load(Ordering::SeqCst) + self.buffered.load(Ordering::SeqCst)
    }

    /// The runner finished or took records: wakes the poll thread if it waits for room. Costs one
    /// atomic load when it does not.
    pub(crate) fn room_made(&self, max_buffered: usize) {
        if self.waiting_for_room.load(Ordering::SeqCst) && self.held() < max_buffered {
            let _guard = self.room_lock.lock();
            self.room.notify_one();
        }
    }

    /// Waits until the runner holds fewer than `max_buffered` records, at most `timeout`.
    fn wait_for_room(&self, max_buffered: usize, timeout: Duration) {
        let Ok(guard) = self.room_lock.lock() else { return };
        // Announce the wait before re-checking, and the runner stores before it checks the flag,
        // so one of the two always sees the other (no lost wake-up).
        self.waiting_for_room.store(true, Ordering::SeqCst);
        if self.held() >= max_buffered && !self.stop.load(Ordering::Acquire) {
            let _ = self.room.wait_timeout(guard, timeout);
        }
        self.waiting_for_room.store(false, Ordering::SeqCst);
    }
}

/// The librdkafka context: rebalance hand-shakes and statistics.
pub(crate) struct Context {
    pub(crate) consumer: String,
    pub(crate) inbound: UnboundedSender<Inbound>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) metrics: ConsumerMetrics,
    /// How long a revocation waits for the runner (its drain deadline plus a margin).
    pub(crate) revoke_wait: Duration,
}

/// A subscribed topic that does not exist yet: expected while the consumer waits for it (it said
/// so once, naming the topic), so librdkafka repeating it is not an error a person must read.
fn topic_not_created_yet(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if topic_not_created_yet(&error) {
            tracing::debug!(consumer = %self.consumer, %reason, "subscribed topic not available yet");
        } else {
            tracing::error!(consumer = %self.consumer, error = %fanout_core::report(&error), %reason, "librdkafka error");
        }
    }

    fn stats(&self, statistics: Statistics) {
        // Under the lock, so a revocation cannot remove a series between the check and the set.
        if let Ok(assigned) = self.shared.assigned.lock() {
            crate::lag::report(&self.metrics, &self.consumer, &assigned, &statistics);
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else { return };
        let tps = tps_of(tpl);
        if let Ok(mut assigned) = self.shared.assigned.lock() {
            for tp in &tps {
                assigned.remove(tp);
                let _ = self.metrics.lag.remove_label_values(&[
                    self.consumer.as_str(),
                    &tp.topic,
                    &tp.partition.to_string(),
                ]);
            }
        }
        if self.shared.closing.load(Ordering::Acquire) {
            // The runner already committed its final offsets.
            return;
        }
        let (reply, answer) = sync_channel(1);
        if self.inbound.send(Inbound::Revoke { tps: tps.clone(), reply }).is_err() {
            return;
        }
        match answer.recv_timeout(self.revoke_wait) {
            Ok(offsets) if !offsets.is_empty() => {
                if let Err(e) = commit(consumer, &offsets, CommitMode::Sync) {
                    tracing::warn!(consumer = %self.consumer, error = %fanout_core::report(&e), "commit on revocation failed; \
                        the new owner re-reads from the last commit and skips what was applied");
                }
            }
            Ok(_) => {}
            Err(_) => tracing::warn!(consumer = %self.consumer, partitions = tps.len(),
                "revoked partitions did not drain in time; their unfinished work is abandoned uncommitted"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let tps = tps_of(tpl);
                tracing::info!(consumer = %self.consumer, partitions = ?tps, "partitions assigned");
                if let Ok(mut assigned) = self.shared.assigned.lock() {
                    assigned.extend(tps.iter().cloned());
                }
                let _ = self.inbound.send(Inbound::Assigned(tps));
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(consumer = %self.consumer, partitions = ?tps_of(tpl), "partitions revoked");
            }
            Rebalance::Error(e) => {
                tracing::warn!(consumer = %self.consumer, error = %fanout_core::report(&e), "rebalance error")
            }
        }
    }
}

fn tps_of(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements().iter().map(|e| Tp::new(e.topic(), e.partition())).collect()
}

/// Commits `offsets` (the next offset to read, per partition).
pub(crate) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &[(Tp, i64)],
    mode: CommitMode,
) -> KafkaResult<()> {
    let mut tpl = TopicPartitionList::with_capacity(offsets.len());
    for (tp, offset) in offsets {
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(*offset))?;
    }
    consumer.commit(&tpl, mode)
}

/// How long the runtime may stay full before fetching is paused. While full, the poll thread
/// simply stops taking records and librdkafka's bounded prefetch (`queued.max.messages.kbytes`)
/// holds the rest; but rebalances are served only by polling, so a runtime stuck this long pauses
/// its partitions and polls again.
const STUCK: Duration = Duration::from_secs(1);

/// Polls until told to stop or until the runner is gone, with flow control: while the runner
/// holds `max_buffered` records, no more are taken.
///
/// Pausing is the exception, not the flow control: in librdkafka a pause throws away the
/// partition's prefetched records and a resume waits for the broker thread's next wake-up (up to
/// a second), so pausing at every full buffer capped a backlog's drain at about `max_buffered`
/// records a second. Partitions are paused only when the runner is shutting down, or stuck for
/// [`STUCK`] (so rebalances and the group session are still served while it stays stuck).
pub(crate) fn poll_loop(consumer: Arc<BaseConsumer<Context>>, max_buffered: usize) {
    let context = consumer.context();
    let shared = context.shared.clone();
    let inbound = context.inbound.clone();
    let pauses = context.metrics.fetch_pauses.with_label_values(&[context.consumer.as_str()]);
    let mut paused = false;
    let mut paused_partitions = 0;
    let mut full_since: Option<Instant> = None;
    while !shared.stop.load(Ordering::Acquire) && !inbound.is_closed() {
        let held = shared.held();
        let full = held >= max_buffered;
        if full {
            full_since.get_or_insert_with(Instant::now);
        } else if !paused || held <= max_buffered / 2 {
            full_since = None;
        }
        let stuck = full_since.is_some_and(|since| since.elapsed() >= STUCK);
        // Once the runner is shutting down, everything stays paused (partitions assigned
        // meanwhile included); a stuck runner resumes at half its buffer, not at the first slot.
        if shared.draining.load(Ordering::Acquire) || stuck || (paused && held > max_buffered / 2) {
            if let Ok(assignment) = consumer.assignment() {
                // Once per assignment, not on every poll: each pause drops the prefetched records.
                if !paused || assignment.count() != paused_partitions {
                    let _ = consumer.pause(&assignment);
                    paused_partitions = assignment.count();
                    pauses.inc();
                }
            }
            paused = true;
        } else {
            if paused {
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.resume(&assignment);
                }
                paused = false;
            }
            if full {
                shared.wait_for_room(max_buffered, Duration::from_millis(100));
                continue;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                shared.in_channel.fetch_add(1, Ordering::SeqCst);
                if inbound.send(Inbound::Record(Record::from_message(&message))).is_err() {
                    break;
                }
            }
            Some(Err(e)) if topic_not_created_yet(&e) => {
                tracing::debug!(consumer = %context.consumer, error = %e, "subscribed topic not available yet")
            }
            Some(Err(e)) => {
                tracing::warn!(consumer = %context.consumer, error = %fanout_core::report(&e), "kafka consumer error")
            }
        }
    }
    // Dropping the last handle closes the consumer: it leaves the group. Nothing is committed
    // here; the runner commits what is finished before it stops this thread.
    drop(consumer);
}

/// Creates the retry and dead-letter topics of `topic` when absent, with as many partitions as
/// `topic` (so a key keeps one partition in each) and the broker's default replication.
pub(crate) async fn ensure_topics(
    config: &ClientConfig,
    topic: &str,
    derived: &[&str],
) -> Result<(), AdminError> {
    let partitions = match partition_count(config, topic).await {
        Some(partitions) => partitions,
        None => {
            // Not an error: a new topic is usually created by its first publish, after its
            // consumers started. The consumer subscribes anyway and picks it up on the next
            // metadata refresh (`topic.metadata.refresh.interval.ms`, 2 s by default here).
            tracing::warn!(%topic, "waiting for topic {topic}: not found (not created yet, or the cluster did \
                not answer); consuming starts within seconds of its creation");
            1
        }
    };
    let specs: Vec<TopicSpec> = derived.iter().map(|name| TopicSpec::new(*name, partitions)).collect();
    match fanout_kafka::ensure_topics(config, &specs, Duration::from_secs(15)).await {
        // Where clients may not create topics, an operator creates them; the runtime still runs.
        Err(AdminError::Refused { topic, code, .. }) => {
            tracing::warn!(%topic, error = %code, "could not create topic; it must be created by other means");
            Ok(())
        }
        other => other,
    }
}

async fn partition_count(config: &ClientConfig, topic: &str) -> Option<i32> {
    let config = config.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = config.create().ok()?;
        let metadata = probe.fetch_metadata(Some(&topic), Duration::from_secs(10)).ok()?;
        let count =
            metadata.topics().iter().find(|t| t.name() == topic && t.error().is_none())?.partitions().len();
        i32::try_from(count).ok().filter(|c| *c > 0)
    })
    .await
    .ok()
    .flatten()
}
