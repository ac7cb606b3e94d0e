//! The running scheduler: one poll thread keeps each owned partition's near window current, one
//! task delivers what is due in Kafka transactions, one re-reads partitions as the window moves.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use fanout_core::schedule::{self, Outcome};
use fanout_kafka::{FetchedRecord, Headers, ProduceError, Record, RecordProducer, TopicSpec};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
    error::KafkaError,
    message::BorrowedMessage,
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
};
use tokio::sync::Notify;

use crate::{
    entry::{self, Entry, Kind, Read},
    metrics::Metrics,
    window::{self, Window},
    SchedulerConfig, SchedulerError,
};

/// How long one transaction step may take before it counts as failed.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the dispatcher sleeps without looking again (a safety net for a lost wake-up).
const MAX_IDLE: Duration = Duration::from_millis(500);

/// Unix milliseconds now, by the wall clock: due times are wall-clock times, so this is the
/// clock "never early" is measured against.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Every owned partition's window.
#[derive(Debug, Default)]
struct Windows(HashMap<i32, Window>);

/// What the poll thread, the dispatcher and the re-reader share.
#[derive(Debug)]
pub(crate) struct Shared {
    windows: Mutex<Windows>,
    /// Wakes the dispatcher: an entry earlier than the one it waits for, a partition loaded.
    wake: Notify,
    /// Partitions to read again whole, at once: a transaction whose outcome is unknown left
    /// their entries either delivered or pending, and only Kafka knows which.
    reread_now: tokio::sync::mpsc::UnboundedSender<i32>,
    window: Duration,
    metrics: Metrics,
    /// Set at the first assignment, empty or not: from then on the instance is a group member,
    /// and one that owns nothing is a ready standby.
    joined: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn windows(&self) -> MutexGuard<'_, Windows> {
        self.windows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies one record read by the group consumer (the first whole read of a partition, then
    /// live). An entry beyond the window is only counted, from its headers: most of a
    /// partition's first read is such entries, and copying them would cost more than the read.
    fn apply_message(&self, message: &BorrowedMessage<'_>) {
        let (partition, offset) = (message.partition(), message.offset());
        let due = entry::deliverable_due(message);
        let mut windows = self.windows();
        let Some(window) = windows.0.get_mut(&partition) else { return };
        window.applied_to = window.applied_to.max(offset + 1);
        if let Some(due) = due.filter(|due| *due >= window.end_ms) {
            window.count_beyond(offset, due);
            return;
        }
        // Held (or a tombstone, a marker, an entry to dead-letter): read whole.
        self.apply(window, partition, entry::read(FetchedRecord::from_message(message)));
    }

    /// Applies one record of partition `partition`, read whole.
    fn apply(&self, window: &mut Window, partition: i32, read: Read) {
        match read {
            Read::Entry(entry) => {
                let due = entry.due_ms();
                let earlier = window.loaded && window.next_due().is_none_or(|next| due < next);
                if window.offer(entry) && earlier {
                    self.wake.notify_one();
                }
            }
            Read::Tombstone(id, outcome) => {
                // Counted when read live: a partition's first read would count old cancels again.
                if window.loaded && outcome == Some(Outcome::Cancelled) {
                    self.metrics.dispatched.with_label_values(&[Outcome::Cancelled.as_str()]).inc();
                }
                window.remove(&id);
            }
            Read::Marker => {}
            Read::Keyless => tracing::warn!(partition, "schedule record without a key; skipped"),
        }
    }

    /// Sets the gauges that describe the windows (`fanout_scheduled_in_window`,
    /// `fanout_scheduled_pending`), at scrape time: nothing per record.
    pub(crate) fn refresh_gauges(&self) {
        let now = now_ms();
        let mut pending = [0; window::BUCKETS.len()];
        let held = {
            let windows = self.windows();
            for window in windows.0.values() {
                window.count_pending(now, &mut pending);
            }
            windows.0.values().map(Window::len).sum::<usize>()
        };
        self.metrics.in_window.set(held as i64);
        for (gauge, count) in self.metrics.pending.iter().zip(pending) {
            gauge.set(count);
        }
    }
}

/// The group consumer's context: partitions given and taken.
struct Context {
    shared: Arc<Shared>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        // The end of a partition is how a partition's first read completes (handled in `poll`).
        if !fanout_kafka::is_end_of_partition(&error) {
            tracing::warn!(error = %fanout_core::report(&error), reason, "schedule consumer: librdkafka error");
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut windows = self.shared.windows();
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.shared.joined.store(true, std::sync::atomic::Ordering::SeqCst);
                let end = now_ms() + self.shared.window.as_millis() as i64;
                for element in partitions.elements() {
                    windows.0.insert(element.partition(), Window::new(end));
                }
                tracing::info!(partitions = ?partitions_of(partitions), "schedule partitions assigned; reading them");
            }
            Rebalance::Revoke(partitions) => {
                // What the dispatcher took from them and has not committed is fenced by the
                // group generation, or committed before the new owner can read past it.
                for element in partitions.elements() {
                    windows.0.remove(&element.partition());
                }
                tracing::info!(partitions = ?partitions_of(partitions), "schedule partitions revoked");
            }
            Rebalance::Error(error) => tracing::warn!(%error, "schedule group rebalance failed"),
        }
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

/// A scheduler that joined nothing yet: topics exist, clients are created, the HTTP port bound.
pub struct Scheduler {
    config: SchedulerConfig,
    producer_config: ClientConfig,
    reread_requests: tokio::sync::mpsc::UnboundedReceiver<i32>,
    shared: Arc<Shared>,
    consumer: Arc<BaseConsumer<Context>>,
    producer: RecordProducer,
    checker: Arc<Checker>,
    listener: tokio::net::TcpListener,
    scanner: Scanner,
    /// What `/metrics` requires (`[http] bearer_token`), if anything.
    http_token: Option<fanout_core::Secret>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("name", &self.config.name).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Creates the schedule topic and its dead-letter topic when absent, the group consumer and
    /// the transactional producer (fencing any earlier instance that crashed mid-transaction), and
    /// binds the HTTP port.
    pub async fn start(config: SchedulerConfig) -> Result<Self, SchedulerError> {
        config.validate().map_err(SchedulerError::Config)?;
        let http_token = config.http.bearer_token().map_err(SchedulerError::Config)?;
        let client = fanout_kafka::client_config(&config.kafka);
        fanout_kafka::ensure_topics(
            &client,
            &[
                TopicSpec::new(&config.topic, config.partitions).with("cleanup.policy", "compact"),
                TopicSpec::new(schedule::dead_letters(&config.topic), 1),
            ],
            Duration::from_secs(30),
        )
        .await?;
        let (reread_now, reread_requests) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            windows: Mutex::default(),
            wake: Notify::new(),
            reread_now,
            window: config.window(),
            metrics: Metrics::get(),
            joined: std::sync::atomic::AtomicBool::new(false),
        });
        let mut consumer_config = client.clone();
        limit_prefetch(&mut consumer_config, &config);
        if let Some(instance) = &config.instance_id {
            consumer_config.set("group.instance.id", instance);
        }
        consumer_config
            .set("group.id", &config.name)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("topic.metadata.refresh.interval.ms", "2000");
        // A crashed instance's partitions move on within seconds, not librdkafka's 45 s default
        // ([kafka.properties] may still say otherwise).
        if !config.kafka.properties.contains_key("session.timeout.ms") {
            consumer_config.set("session.timeout.ms", "10000").set("heartbeat.interval.ms", "2000");
        }
        let consumer: BaseConsumer<Context> = consumer_config
            .create_with_context(Context { shared: shared.clone() })
            .map_err(SchedulerError::consumer("create the consumer"))?;
        let checker = Checker::new(&client, &config.name, &config.topic)
            .map_err(SchedulerError::consumer("create the cancel checker"))?;
        let mut producer_config = client;
        // A crashed instance's open transaction blocks read_committed readers of its partitions
        // until the broker aborts it: after 10 s, not the default minute.
        if !config.kafka.properties.contains_key("transaction.timeout.ms") {
            producer_config.set("transaction.timeout.ms", "10000");
        }
        if !config.kafka.properties.contains_key("linger.ms") {
            // A dispatch hands over its whole batch at once and waits for it: lingering would
            // only add to every delivery's lateness.
            producer_config.set("linger.ms", "0");
        }
        if let Some(instance) = &config.instance_id {
            // The same id after a restart: its first `init_transactions` aborts the dead
            // process's open transaction, which would hold back every read_committed read of
            // its partitions (this instance's first read included) until it timed out.
            producer_config.set("transactional.id", format!("{}-{instance}", config.name));
        }
        let producer = transactional_producer(&producer_config, &config.name).await?;
        let scanner = Scanner::new(&config).map_err(SchedulerError::consumer("create the re-reader"))?;
        let listener = tokio::net::TcpListener::bind(&config.http.listen)
            .await
            .map_err(|source| SchedulerError::Http { listen: config.http.listen.clone(), source })?;
        Ok(Self {
            config,
            producer_config,
            reread_requests,
            shared,
            consumer: Arc::new(consumer),
            producer,
            checker: Arc::new(checker),
            listener,
            scanner,
            http_token,
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` listen.
    pub fn http_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Joins the group and delivers until `shutdown` completes; then finishes the transaction in
    /// flight and leaves the group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), SchedulerError> {
        let Self {
            config,
            producer_config,
            reread_requests,
            shared,
            consumer,
            producer,
            checker,
            listener,
            scanner,
            http_token,
        } = self;
        consumer.subscribe(&[&config.topic]).map_err(SchedulerError::consumer("subscribe"))?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let poller = {
            let (consumer, shared, stop) = (consumer.clone(), shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("fanout-scheduler-poll".into())
                .spawn(move || poll(&consumer, &shared, &stop))
                .map_err(SchedulerError::Thread)?
        };
        let http = tokio::spawn(crate::http::serve(listener, shared.clone(), http_token));
        let rereads =
            tokio::spawn(reread(config.clone(), shared.clone(), reread_requests, Arc::new(scanner)));
        let mut dispatcher = Dispatcher {
            shared,
            consumer: consumer.clone(),
            producer,
            producer_config,
            checker,
            name: config.name.clone(),
            dead_letters: schedule::dead_letters(&config.topic),
            topic: config.topic.clone(),
            max_batch: config.max_batch,
        };
        tracing::info!(group = %config.name, topic = %config.topic, "scheduler started");
        let result = tokio::select! {
            result = dispatcher.run() => result,
            () = shutdown => Ok(()),
        };
        if let Err(error) = &result {
            tracing::error!(error = %fanout_core::report(error), "the scheduler stops");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        rereads.abort();
        http.abort();
        let _ = tokio::task::spawn_blocking(move || poller.join()).await;
        consumer.unsubscribe();
        tracing::info!(group = %config.name, "scheduler stopped");
        result
    }
}

/// The poll thread: every record of the owned partitions, applied to their windows as read.
fn poll(consumer: &BaseConsumer<Context>, shared: &Shared, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => shared.apply_message(&message),
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let mut windows = shared.windows();
                if let Some(window) = windows.0.get_mut(&partition) {
                    if !window.loaded {
                        window.loaded = true;
                        tracing::info!(partition, held = window.len(), "schedule partition read; delivering");
                        shared.wake.notify_one();
                    }
                }
            }
            Some(Err(error)) => {
                tracing::warn!(error = %fanout_core::report(&error), "schedule consumer error")
            }
        }
    }
}

/// Re-reads each loaded partition every half window, bringing in the entries the window now
/// reaches. The far future stays in Kafka: memory holds the near window only.
async fn reread(
    config: SchedulerConfig,
    shared: Arc<Shared>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<i32>,
    scanner: Arc<Scanner>,
) {
    let mut ticks = tokio::time::interval(config.window() / 2);
    ticks.tick().await;
    loop {
        // Every half window, each partition for the window's new part; on request, one
        // partition whole (everything due before the window's end).
        let whole = tokio::select! {
            _ = ticks.tick() => None,
            Some(partition) = requests.recv() => Some(partition),
        };
        let due: Vec<(i32, i64, i64)> = {
            let mut windows = shared.windows();
            let new_end = now_ms() + config.window().as_millis() as i64;
            windows
                .0
                .iter_mut()
                .filter(|(p, w)| w.loaded && !w.scanning && whole.is_none_or(|only| only == **p))
                .map(|(p, w)| {
                    let old_end = w.begin_scan(new_end);
                    (*p, if whole.is_some() { i64::MIN } else { old_end }, new_end)
                })
                .collect()
        };
        for (partition, from, to) in due {
            let began = std::time::Instant::now();
            let scanner = scanner.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                let mut found: HashMap<String, Entry> = HashMap::new();
                let mut beyond: BTreeMap<i64, u32> = BTreeMap::new();
                // A whole read follows a transaction of unknown outcome, which may still be
                // open: it reads past that transaction's records once the broker settled it.
                scanner
                    .scan(partition, from == i64::MIN, |message| {
                        // Most entries are outside the window's new part: judged by their headers,
                        // counted when beyond it, never copied.
                        match entry::deliverable_due(message) {
                            Some(due) if due >= to => *beyond.entry(window::minute(due)).or_default() += 1,
                            Some(due) if due < from => {}
                            _ => match entry::read(FetchedRecord::from_message(message)) {
                                Read::Entry(entry) if (from..to).contains(&entry.due_ms()) => {
                                    found.insert(entry.id.clone(), entry);
                                }
                                Read::Tombstone(id, _) => {
                                    found.remove(&id);
                                }
                                _ => {}
                            },
                        }
                    })
                    .map(|read_to| (found, beyond, read_to))
            })
            .await;
            let mut windows = shared.windows();
            let Some(window) = windows.0.get_mut(&partition) else { continue };
            let whole = from == i64::MIN;
            match scanned {
                Ok(Ok((found, beyond, read_to))) => {
                    window.recount_beyond(beyond, read_to);
                    let taken = window.end_scan(found.into_values());
                    window.held = false;
                    let elapsed_ms = began.elapsed().as_millis() as u64;
                    tracing::debug!(partition, taken, whole, read_to, elapsed_ms, "schedule window advanced");
                }
                Ok(Err(error)) if whole => {
                    // Still held: the entries of the unknown transaction must be settled first.
                    window.end_scan(std::iter::empty());
                    tracing::warn!(partition, error = %fanout_core::report(&error), "re-reading a held schedule partition failed; trying again");
                    let _ = shared.reread_now.send(partition);
                }
                Ok(Err(error)) => {
                    // The window keeps its new end: entries read live still arrive; the next
                    // re-read brings in what this one missed, from its old end.
                    window.end_scan(std::iter::empty());
                    window.end_ms = from;
                    tracing::warn!(partition, error = %fanout_core::report(&error), "re-reading a schedule partition failed; trying again next time");
                }
                Err(_) => {
                    window.end_scan(std::iter::empty());
                    if whole {
                        let _ = shared.reread_now.send(partition);
                    }
                }
            }
            shared.wake.notify_one();
        }
    }
}

/// Reads one partition at a time whole, for the re-reads: one consumer for the scheduler's life
/// (a consumer per read made every read's buffers new allocations, which the allocator kept:
/// RSS grew by about 90 MiB over a few re-reads of a million entries).
struct Scanner {
    consumer: BaseConsumer<Quiet>,
    /// A `read_uncommitted` client, only for the high watermarks (a `read_committed` one is told
    /// the last stable offset instead).
    uncommitted: BaseConsumer<Quiet>,
    topic: String,
    /// The longest wait for the cluster, and between two records.
    timeout: Duration,
}

/// Why a re-read did not complete.
#[derive(Debug, thiserror::Error)]
enum ScanError {
    #[error("reading schedule partition {partition} failed")]
    Kafka {
        partition: i32,
        #[source]
        source: KafkaError,
    },
    #[error("schedule partition {partition}: no record for {waited:?} before its end")]
    Stalled { partition: i32, waited: Duration },
    #[error("schedule partition {partition}: transactions still open after {waited:?}")]
    Unsettled { partition: i32, waited: Duration },
}

impl Scanner {
    fn new(config: &SchedulerConfig) -> Result<Self, KafkaError> {
        let mut client = fanout_kafka::client_config(&config.kafka);
        limit_prefetch(&mut client, config);
        // Assigned, never subscribed, never committed: the id only satisfies librdkafka.
        client
            .set("group.id", format!("{}-reread", config.name))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true");
        let mut uncommitted = client.clone();
        uncommitted.set("isolation.level", "read_uncommitted");
        Ok(Self {
            consumer: client.create_with_context(Quiet)?,
            uncommitted: uncommitted.create_with_context(Quiet)?,
            topic: config.topic.clone(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Hands every committed record of `partition` up to its end now to `each`, uncopied;
    /// returns the last offset read (-1: none). `settled`: up to the high watermark, waiting
    /// for the transactions open now to end (else up to the last stable offset).
    fn scan(
        &self,
        partition: i32,
        settled: bool,
        mut each: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<i64, ScanError> {
        let kafka = |source| ScanError::Kafka { partition, source };
        let until = match settled {
            true => Some(
                self.uncommitted.fetch_watermarks(&self.topic, partition, self.timeout).map_err(kafka)?.1,
            ),
            false => None,
        };
        let waiting = std::time::Instant::now();
        let (low, high) = loop {
            let (low, high) =
                self.consumer.fetch_watermarks(&self.topic, partition, self.timeout).map_err(kafka)?;
            match until {
                Some(until) if high < until => {
                    if waiting.elapsed() > self.timeout {
                        return Err(ScanError::Unsettled { partition, waited: self.timeout });
                    }
                    // The broker ends a dead producer's transaction within transaction.timeout.ms.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Some(until) => break (low, until),
                None => break (low, high),
            }
        };
        if high <= low {
            return Ok(-1);
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, partition, Offset::Offset(low)).map_err(kafka)?;
        self.consumer.assign(&assignment).map_err(kafka)?;
        let mut read_to = -1;
        let mut progress = std::time::Instant::now();
        let result = loop {
            match self.consumer.poll(Duration::from_millis(100)) {
                None if progress.elapsed() > self.timeout => {
                    break Err(ScanError::Stalled { partition, waited: self.timeout })
                }
                None => {}
                // The end: of the records, or (read_committed) of what is settled.
                Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Ok(read_to),
                Some(Err(error)) if fanout_kafka::is_end_of_partition(&error) => {}
                Some(Err(error)) => break Err(kafka(error)),
                Some(Ok(message)) if message.partition() != partition => {}
                // Written after the read began: the live consumer has it.
                Some(Ok(message)) if message.offset() >= high => break Ok(read_to),
                Some(Ok(message)) => {
                    progress = std::time::Instant::now();
                    read_to = message.offset();
                    each(&message);
                    if read_to + 1 >= high {
                        break Ok(read_to);
                    }
                }
            }
        };
        // The next scan assigns anew; a failed unassign only leaves this one's prefetch behind.
        let _ = self.consumer.unassign();
        result
    }
}

/// Bounds what librdkafka fetches ahead of the poll (unless `[kafka.properties]` says
/// otherwise). Its defaults (100,000 records per partition, 64 MiB of payloads, 50 MiB per
/// fetch) made a whole read of a million entries cost over 200 MiB: the limits count payload
/// bytes, and an entry's headers are several times its payload. Small fetches keep the reads as
/// fast (the poll thread applies records faster than the broker serves them).
fn limit_prefetch(client: &mut ClientConfig, config: &SchedulerConfig) {
    for (key, value) in [
        ("queued.min.messages", "2000"),
        ("queued.max.messages.kbytes", "2048"),
        ("fetch.max.bytes", "2097152"),
        ("max.partition.fetch.bytes", "524288"),
        // A full queue postpones the partition's next fetch by this (1 s by default): with a
        // bounded queue, that default would make a whole read mostly waiting.
        ("fetch.queue.backoff.ms", "10"),
    ] {
        if !config.kafka.properties.contains_key(key) {
            client.set(key, value);
        }
    }
}

/// Delivers due entries: one Kafka transaction per batch holds their records on the target
/// topics and their tombstones on the schedule topic, so a crash between the two is impossible.
struct Dispatcher {
    shared: Arc<Shared>,
    consumer: Arc<BaseConsumer<Context>>,
    producer: RecordProducer,
    producer_config: ClientConfig,
    checker: Arc<Checker>,
    name: String,
    topic: String,
    dead_letters: String,
    max_batch: usize,
}

impl Dispatcher {
    async fn run(&mut self) -> Result<(), SchedulerError> {
        let mut batch: Vec<(i32, Entry)> = Vec::with_capacity(self.max_batch);
        loop {
            let next = self.take(&mut batch);
            if batch.is_empty() {
                let wait = next.map_or(MAX_IDLE, |due| {
                    Duration::from_millis(due.saturating_sub(now_ms()).max(1) as u64).min(MAX_IDLE)
                });
                let _ = tokio::time::timeout(wait, self.shared.wake.notified()).await;
                continue;
            }
            match self.deliver(&batch).await {
                Ok(()) => batch.clear(),
                Err(Failed::Refused(refused)) if self.producer.abort(TRANSACTION_TIMEOUT).await.is_ok() => {
                    let (partition, entry) = &mut batch[refused.index];
                    tracing::warn!(partition, id = %entry.id, reason = %refused.reason, "a scheduled event's target refused it; dead-lettering it");
                    entry.kind =
                        Kind::Invalid { reason: format!("the target refused it: {}", refused.reason) };
                    self.restore(&mut batch);
                }
                Err(Failed::Cancelled(cancelled))
                    if self.producer.abort(TRANSACTION_TIMEOUT).await.is_ok() =>
                {
                    // Their cancels came first: they stay undelivered; the rest goes again.
                    tracing::debug!(cancelled = cancelled.len(), "entries cancelled while being dispatched");
                    batch.retain(|(_, entry)| !cancelled.contains(&entry.id));
                    self.restore(&mut batch);
                }
                Err(failed) => {
                    let (error, fenced) = failed.describe();
                    tracing::warn!(%error, entries = batch.len(), "schedule dispatch failed; aborting");
                    let aborted = !fenced && self.producer.abort(TRANSACTION_TIMEOUT).await.is_ok();
                    if aborted {
                        // Nothing of it is visible: the batch goes again.
                        self.restore(&mut batch);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    // The producer cannot go on (a broker restart can leave it so, after a
                    // delivery timed out), and whether its transaction committed is unknown
                    // until the broker resolves it. A new producer takes over, and the batch's
                    // partitions are read again whole (read_committed waits for that
                    // resolution): what was committed has its tombstone, the rest is pending.
                    let mut partitions: Vec<i32> = batch.drain(..).map(|(p, _)| p).collect();
                    partitions.sort_unstable();
                    partitions.dedup();
                    tracing::warn!(?partitions, "schedule transaction outcome unknown; replacing the producer and reading these partitions again");
                    {
                        let mut windows = self.shared.windows();
                        for partition in &partitions {
                            if let Some(window) = windows.0.get_mut(partition) {
                                window.held = true;
                            }
                        }
                    }
                    for partition in partitions {
                        let _ = self.shared.reread_now.send(partition);
                    }
                    loop {
                        match transactional_producer(&self.producer_config, &self.name).await {
                            Ok(producer) => break self.producer = producer,
                            Err(error) => {
                                tracing::warn!(error = %fanout_core::report(&error), "cannot start a schedule producer yet");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Puts a failed batch back into the windows of the partitions still owned.
    fn restore(&self, batch: &mut Vec<(i32, Entry)>) {
        let mut windows = self.shared.windows();
        for (partition, entry) in batch.drain(..) {
            if let Some(window) = windows.0.get_mut(&partition) {
                window.restore([entry]);
            }
        }
    }

    /// Takes the due entries of loaded partitions into `batch`; the earliest due time left.
    fn take(&self, batch: &mut Vec<(i32, Entry)>) -> Option<i64> {
        let now = now_ms();
        let mut windows = self.shared.windows();
        let mut taken = Vec::new();
        let mut next: Option<i64> = None;
        for (partition, window) in windows.0.iter_mut().filter(|(_, w)| w.loaded && !w.held) {
            if batch.len() < self.max_batch {
                window.take_due(now, self.max_batch - batch.len(), &mut taken);
                batch.extend(taken.drain(..).map(|entry| (*partition, entry)));
            }
            if let Some(due) = window.next_due() {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        self.shared.metrics.in_window.set(windows.0.values().map(Window::len).sum::<usize>() as i64);
        next
    }

    async fn deliver(&self, batch: &[(i32, Entry)]) -> Result<(), Failed> {
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut headers = Vec::with_capacity(batch.len());
        for (_, entry) in batch {
            let (outcome, record_headers) = match &entry.kind {
                Kind::Deliver { due_ms, not_after_ms: Some(limit), .. } if now > *limit => {
                    let reason = format!("not delivered by its not_after time ({limit} ms; due {due_ms} ms)");
                    // What not_after is for: the caller chose a dead letter over a late arrival.
                    tracing::warn!(id = %entry.id, %reason, "scheduled entry expired; dead-lettering it");
                    (Outcome::Expired, dead_letter_headers(entry, &reason))
                }
                Kind::Deliver { due_ms, .. } => {
                    (Outcome::Delivered, entry::delivered_headers(entry, *due_ms))
                }
                Kind::Invalid { reason } => {
                    tracing::error!(id = %entry.id, %reason, "schedule entry cannot be delivered; dead-lettering it");
                    (Outcome::Invalid, dead_letter_headers(entry, reason))
                }
            };
            outcomes.push(outcome);
            headers.push(record_headers);
        }
        self.producer.begin().await?;
        self.check_not_cancelled(batch, &outcomes).await?;
        let mut records = Vec::with_capacity(batch.len() * 2);
        for (((_, entry), outcome), headers) in batch.iter().zip(&outcomes).zip(&headers) {
            let (topic, key) = match (&entry.kind, outcome) {
                (Kind::Deliver { topic, key, .. }, Outcome::Delivered) => (topic.as_str(), key.as_deref()),
                _ => (self.dead_letters.as_str(), Some(entry.id.as_bytes())),
            };
            records.push(Record {
                topic,
                partition: None,
                key,
                payload: entry.payload.as_deref(),
                headers: headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect::<Headers>(),
            });
        }
        for ((partition, entry), outcome) in batch.iter().zip(&outcomes) {
            records.push(Record {
                topic: &self.topic,
                partition: Some(*partition),
                key: Some(entry.id.as_bytes()),
                payload: None,
                headers: Headers::with_capacity(1).add(schedule::OUTCOME, Some(outcome.as_str().as_bytes())),
            });
        }
        let mut refused = None;
        for (index, result) in self.producer.send_all(records).await.into_iter().enumerate() {
            match result {
                Ok(_) => {}
                // A target that can never take the record (no such topic, an invalid name, too
                // large): that entry is dead-lettered with the reason, the rest go again.
                Err(error) if index < batch.len() && !error.is_retriable() && refused.is_none() => {
                    refused = Some((index, error));
                }
                Err(error) => return Err(error.into()),
            }
        }
        if let Some((index, error)) = refused {
            return Err(Refused { index, reason: fanout_core::report(&error), error }.into());
        }
        let mut offsets = TopicPartitionList::new();
        let owned: Vec<i32> = self.shared.windows().0.keys().copied().collect();
        for partition in owned {
            // The group's offsets are never used to resume (every assignment reads its partition
            // whole); committing them in the transaction ties it to the group's generation, so a
            // scheduler that lost its partitions cannot commit a delivery the new owner also makes.
            let _ = offsets.add_partition_offset(&self.topic, partition, Offset::Offset(0));
        }
        let group = self.consumer.group_metadata().ok_or(Failed::NoGroup)?;
        self.producer.commit(offsets, group, TRANSACTION_TIMEOUT).await?;
        let acked = now_ms();
        for ((_, entry), outcome) in batch.iter().zip(&outcomes) {
            self.shared.metrics.dispatched.with_label_values(&[outcome.as_str()]).inc();
            if *outcome == Outcome::Delivered {
                let late = (acked - entry.due_ms()).max(0) as f64 / 1000.0;
                self.shared.metrics.lateness.observe(late);
            }
        }
        Ok(())
    }

    /// Writes the transaction's dispatch marker to each partition of the batch (its first record
    /// there) and checks that no cancel of the batch's entries precedes it: the partition's order
    /// is what tells a cancel whether it came in time (see [`schedule::marker`]).
    async fn check_not_cancelled(&self, batch: &[(i32, Entry)], outcomes: &[Outcome]) -> Result<(), Failed> {
        // Per partition: where its check starts, and the entries the transaction ends there.
        let mut partitions: BTreeMap<i32, (i64, Ended<'_>)> = BTreeMap::new();
        for ((partition, entry), outcome) in batch.iter().zip(outcomes) {
            let (from, ended) = partitions.entry(*partition).or_insert((i64::MAX, Vec::new()));
            *from = (*from).min(entry.check_from.unwrap_or(0));
            ended.push((entry.id.as_str(), *outcome));
        }
        let values: Vec<Vec<u8>> =
            partitions.values().map(|(_, ended)| schedule::marker::encode(ended.iter().copied())).collect();
        let markers: Vec<Record<'_>> = partitions
            .keys()
            .zip(&values)
            .map(|(partition, value)| Record {
                topic: &self.topic,
                partition: Some(*partition),
                key: Some(schedule::MARKER_KEY.as_bytes()),
                payload: Some(value),
                headers: Headers::with_capacity(0),
            })
            .collect();
        let mut ranges = Vec::with_capacity(partitions.len());
        for ((partition, (from, _)), result) in partitions.iter().zip(self.producer.send_all(markers).await) {
            ranges.push((*partition, *from, result?.offset));
        }
        let wanted: HashSet<String> = batch.iter().map(|(_, entry)| entry.id.clone()).collect();
        let checker = self.checker.clone();
        let cancelled = tokio::task::spawn_blocking(move || checker.cancelled(&ranges, &wanted))
            .await
            .map_err(|_| Failed::Check("the check's thread ended".into()))?
            .map_err(Failed::Check)?;
        if cancelled.is_empty() {
            Ok(())
        } else {
            Err(Failed::Cancelled(cancelled))
        }
    }
}

/// Entries a transaction ends, with how.
type Ended<'a> = Vec<(&'a str, Outcome)>;

/// Why a dispatch transaction did not commit.
enum Failed {
    /// One entry's target refused its record for good.
    Refused(Refused),
    /// The transaction failed.
    Produce(ProduceError),
    /// Cancels of these entries precede the transaction's markers: they are not to be delivered.
    Cancelled(HashSet<String>),
    /// The check for cancels could not complete; why.
    Check(String),
    /// The consumer left its group (it is closing): no commit can be tied to a generation.
    NoGroup,
}

/// The first entry of a batch whose target refused it, and why.
struct Refused {
    index: usize,
    reason: String,
    error: ProduceError,
}

impl From<Refused> for Failed {
    fn from(refused: Refused) -> Self {
        Self::Refused(refused)
    }
}

impl From<ProduceError> for Failed {
    fn from(error: ProduceError) -> Self {
        Self::Produce(error)
    }
}

impl Failed {
    /// What went wrong, for the log, and whether the producer was fenced (it cannot abort).
    fn describe(&self) -> (String, bool) {
        match self {
            Self::Refused(Refused { error, .. }) | Self::Produce(error) => {
                (fanout_core::report(error), error.is_fenced())
            }
            Self::Cancelled(cancelled) => {
                (format!("{} entries were cancelled, and the abort failed", cancelled.len()), false)
            }
            Self::Check(reason) => (format!("checking for cancels: {reason}"), false),
            Self::NoGroup => ("the consumer has left its group: nothing can be committed".into(), false),
        }
    }
}

/// Reads, `read_committed`, the stretch of each schedule partition between what the poll thread
/// had applied when a batch's entries were taken and the batch's marker: the cancels written
/// there are the ones the window did not see.
pub(crate) struct Checker {
    consumer: BaseConsumer<Quiet>,
    topic: String,
}

impl Checker {
    fn new(client: &ClientConfig, name: &str, topic: &str) -> Result<Self, KafkaError> {
        let mut config = client.clone();
        // Assigned, never subscribed, never committed: the id only satisfies librdkafka.
        config
            .set("group.id", format!("{name}-check"))
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10");
        Ok(Self { consumer: config.create_with_context(Quiet)?, topic: topic.to_owned() })
    }

    /// The ids of `wanted` whose tombstone lies in `[from, to)` of its partition, for each
    /// `(partition, from, to)`. Blocking.
    fn cancelled(
        &self,
        ranges: &[(i32, i64, i64)],
        wanted: &HashSet<String>,
    ) -> Result<HashSet<String>, String> {
        let started = Instant::now();
        let late = || started.elapsed() > TRANSACTION_TIMEOUT;
        let kafka = |what: &str, error: KafkaError| format!("{what}: {}", fanout_core::report(&error));
        let mut open: HashMap<i32, i64> = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for &(partition, from, to) in ranges.iter().filter(|(_, from, to)| from < to) {
            // `to` is this transaction's first record there, so the stable end stops at it once
            // every earlier transaction ended; the read then sees all they committed.
            loop {
                let (_, stable) = self
                    .consumer
                    .fetch_watermarks(&self.topic, partition, TRANSACTION_TIMEOUT)
                    .map_err(|error| kafka("fetch the stable end", error))?;
                if stable >= to {
                    break;
                }
                if late() {
                    return Err(format!("partition {partition} stayed unstable below offset {to}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            open.insert(partition, to);
            let _ = assignment.add_partition_offset(&self.topic, partition, Offset::Offset(from));
        }
        let mut found = HashSet::new();
        if open.is_empty() {
            return Ok(found);
        }
        self.consumer.assign(&assignment).map_err(|error| kafka("assign", error))?;
        while !open.is_empty() {
            match self.consumer.poll(Duration::from_millis(100)) {
                None if late() => return Err(format!("reading partitions {:?} timed out", open.keys())),
                None => {}
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    open.remove(&partition);
                }
                Some(Err(error)) => return Err(kafka("read", error)),
                Some(Ok(message)) => {
                    let partition = message.partition();
                    let Some(&to) = open.get(&partition) else { continue };
                    if message.offset() + 1 >= to {
                        open.remove(&partition);
                    }
                    if message.offset() >= to || message.payload().is_some() {
                        continue;
                    }
                    if let Some(id) = message.key().and_then(|key| std::str::from_utf8(key).ok()) {
                        if wanted.contains(id) {
                            found.insert(id.to_owned());
                        }
                    }
                }
            }
        }
        let _ = self.consumer.unassign();
        Ok(found)
    }
}

/// A client context that does not report the end of a partition (how a check completes).
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if !fanout_kafka::is_end_of_partition(&error) {
            tracing::warn!(error = %fanout_core::report(&error), reason, "schedule check: librdkafka error");
        }
    }
}

impl ConsumerContext for Quiet {}

/// A transactional producer with an id of its own: instances never fence each other by id (an
/// `instance_id` fences only its own predecessor); the consumer group's generation fences a
/// commit for partitions an instance no longer owns.
async fn transactional_producer(config: &ClientConfig, name: &str) -> Result<RecordProducer, ProduceError> {
    // A fixed id (`instance_id`) comes in the config; else a fresh one each time.
    let id = config
        .get("transactional.id")
        .map_or_else(|| format!("{name}-{}", uuid::Uuid::now_v7()), str::to_owned);
    RecordProducer::transactional(config.clone(), &id, TRANSACTION_TIMEOUT).await
}

/// A dead-lettered entry's headers: all it had, plus why.
fn dead_letter_headers(entry: &Entry, reason: &str) -> Vec<(String, Option<Vec<u8>>)> {
    let mut headers = entry.headers.clone();
    headers.push((schedule::REASON.to_owned(), Some(reason.as_bytes().to_vec())));
    headers
}

/// Whether the instance joined its group, how many partitions it owns and how many of them it
/// has read once (it delivers all it owns when the two are equal).
pub(crate) fn readiness(shared: &Arc<Shared>) -> (bool, usize, usize) {
    let joined = shared.joined.load(std::sync::atomic::Ordering::SeqCst);
    let windows = shared.windows();
    (joined, windows.0.len(), windows.0.values().filter(|w| w.loaded).count())
}
