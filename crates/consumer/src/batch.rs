//! One batch: events of distinct keys applied in one store transaction, each inside its own
//! savepoint, so a failing event rolls back alone and the rest commit together with their dedupe
//! marks. Retry and dead-letter records are acknowledged by Kafka before the transaction that
//! finishes their source event commits, so nothing is lost between the topics.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{Any, AnyConnection, Connection, Transaction};
use tracing::Instrument;

use crate::{
    config::RetrySettings,
    dispatch::{Finish, Work},
    dlq::{failure_headers, headers, Failure, Outbound},
    handler::{AnyEvent, Route},
    meta::{EventMeta, Origin, Record},
    metrics::{ConsumerMetrics, Outcome},
    retry::{self, Plan},
    store::{hex, Parked, Store},
    DecodeError, HandlerError,
};

/// One handler bound to its topics.
pub(crate) struct Binding {
    pub(crate) route: Arc<dyn Route>,
    /// The topic events are published to.
    pub(crate) topic: String,
    /// `<topic>.<consumer>.retry`.
    pub(crate) retry_topic: String,
    /// `<topic>.<consumer>.dlq`.
    pub(crate) dlq_topic: String,
}

/// Everything a batch needs; shared by all batches of a consumer.
pub(crate) struct Engine {
    pub(crate) consumer: String,
    pub(crate) store: Store,
    /// By the topic a record is fetched from: its binding, and whether that is the retry topic.
    pub(crate) bindings: HashMap<String, (Arc<Binding>, bool)>,
    pub(crate) outbound: Outbound,
    pub(crate) retry: RetrySettings,
    pub(crate) metrics: ConsumerMetrics,
}

/// A batch's verdict on one event.
pub(crate) type Finished = (Work, Finish);

/// An event the store must finish, with what the decoder made of it.
struct Prepared {
    work: Work,
    binding: Arc<Binding>,
    on_retry_topic: bool,
    decoded: Result<AnyEvent, DecodeError>,
}

/// The outcome of one event inside the transaction, counted only once the transaction commits.
struct Step {
    finish: Finish,
    outcome: Outcome,
    /// When an applied event happened (ms since the epoch), for the end-to-end latency, which
    /// runs to its effect committing.
    event_time_ms: Option<i64>,
}

/// Failures that are not the event's: the whole batch is rolled back and runs again.
#[derive(Debug, thiserror::Error)]
enum Abort {
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl Engine {
    /// Runs one batch to its end; returns every event with its verdict, for the dispatcher.
    pub(crate) async fn run(self: Arc<Self>, works: Vec<Work>) -> Vec<Finished> {
        let mut finished = Vec::with_capacity(works.len());
        let mut prepared = Vec::with_capacity(works.len());
        // Decode outside the transaction: a slow registry lookup must not hold store locks.
        for work in works {
            let Some((binding, on_retry_topic)) = self.bindings.get(&work.record.topic).cloned() else {
                // Not subscribed by any handler: nothing can apply it, and holding it would stall
                // the partition forever.
                tracing::warn!(topic = %work.record.topic, "record from a topic without a handler; skipped");
                finished.push((work, Finish::Done));
                continue;
            };
            let decoded = binding.route.decode(&binding.topic, work.record.payload.as_deref()).await;
            match decoded {
                Err(DecodeError::Unavailable(reason)) => {
                    tracing::warn!(%reason, "schema registry unavailable; the event will be decoded again");
                    self.metrics.outcome(&self.consumer, &binding.topic, Outcome::Failed);
                    finished.push(self.later(work));
                }
                decoded => prepared.push(Prepared { work, binding, on_retry_topic, decoded }),
            }
        }
        if prepared.is_empty() {
            return finished;
        }
        let works: Vec<Work> = prepared.iter().map(|p| p.work.clone()).collect();
        let topics: Vec<String> = prepared.iter().map(|p| p.binding.topic.clone()).collect();
        match self.transact(prepared).await {
            Ok(steps) => {
                let committed_ms = now_ms();
                for (step, topic) in steps.into_iter().zip(&topics) {
                    self.metrics.outcome(&self.consumer, topic, step.0.outcome);
                    if let Some(time_ms) = step.0.event_time_ms {
                        let latency = u64::try_from(committed_ms - time_ms).unwrap_or(0);
                        self.metrics.end_to_end(&self.consumer, topic, Duration::from_millis(latency));
                    }
                    finished.push((step.1, step.0.finish));
                }
            }
            Err(abort) => {
                tracing::warn!(error = %abort, events = works.len(), "batch rolled back; its events will run again");
                for (work, topic) in works.into_iter().zip(&topics) {
                    self.metrics.outcome(&self.consumer, topic, Outcome::Failed);
                    finished.push(self.later(work));
                }
            }
        }
        finished
    }

    /// Runs the event again after an outage backoff, without counting an attempt.
    fn later(&self, mut work: Work) -> Finished {
        work.not_before_ms = now_ms() + millis(retry::outage_backoff(&self.retry));
        let again = work.clone();
        (work, Finish::Again(again))
    }

    async fn transact(&self, prepared: Vec<Prepared>) -> Result<Vec<(Step, Work)>, Abort> {
        let mut tx = self.store.begin().await?;
        let mut steps = Vec::with_capacity(prepared.len());
        for event in prepared {
            let work = event.work.clone();
            let step = self.one(&mut tx, event).await?;
            steps.push((step, work));
        }
        tx.commit().await?;
        Ok(steps)
    }

    /// Finishes one event inside the batch transaction.
    async fn one(&self, tx: &mut Transaction<'static, Any>, event: Prepared) -> Result<Step, Abort> {
        let Prepared { work, binding, on_retry_topic, decoded } = event;
        // A second handle on the record, so `work` can move on to the failure path.
        let record = &work.record.clone();
        let origin = origin(record, &binding.topic, on_retry_topic);
        let attempt = work.attempt + 1;
        let meta = EventMeta::of(record, origin, attempt);
        let key = record.key.as_deref().map(hex);
        let parked = key.as_deref().map(|key| Parked {
            topic: &binding.topic,
            key,
            event_id: &meta.event_id,
            offset: origin.offset,
        });
        let now = now_ms();

        // Per-key order across retries: while an earlier event of this key waits in the retry
        // path, this one queues behind it there instead of overtaking it.
        if let (false, Some(parked)) = (on_retry_topic, parked.as_ref()) {
            if self.store.is_parked(tx, parked.topic, parked.key).await? {
                let failure = self.failure(origin, work.attempt, None, None, None);
                let extra = [(headers::NOT_BEFORE, now.to_string()), (headers::HELD_BACK, "true".to_owned())];
                self.outbound
                    .send(&binding.retry_topic, record, failure_headers(record, &failure, &extra))
                    .await?;
                self.store.park(tx, parked, now).await?;
                return Ok(Step { finish: Finish::Done, outcome: Outcome::Parked, event_time_ms: None });
            }
        }

        let event = match decoded {
            Ok(event) => event,
            Err(error) => {
                let text = format!("undecodable: {error}");
                self.dead_letter(
                    tx,
                    &binding,
                    &work,
                    origin,
                    attempt,
                    &text,
                    parked.as_ref(),
                    on_retry_topic,
                )
                .await?;
                return Ok(Step {
                    finish: Finish::Done,
                    outcome: Outcome::DeadLettered,
                    event_time_ms: None,
                });
            }
        };

        // A nested transaction is a SAVEPOINT: this event's writes roll back alone.
        let mut savepoint = Connection::begin(&mut **tx).await?;
        if !self.store.mark_processed(&mut savepoint, &meta.event_id, now).await? {
            if on_retry_topic {
                if let Some(parked) = parked.as_ref() {
                    self.store.unpark(&mut savepoint, parked).await?;
                }
            }
            savepoint.commit().await?;
            return Ok(Step { finish: Finish::Done, outcome: Outcome::Duplicate, event_time_ms: None });
        }
        let result = self.call(&binding, event, &meta, &mut savepoint).await;
        match result {
            Ok(()) => {
                if on_retry_topic {
                    if let Some(parked) = parked.as_ref() {
                        self.store.unpark(&mut savepoint, parked).await?;
                    }
                }
                savepoint.commit().await?;
                let event_time_ms = event_time_ms(&meta, record);
                Ok(Step { finish: Finish::Done, outcome: Outcome::Applied, event_time_ms })
            }
            Err(error) => {
                savepoint.rollback().await?;
                self.failed(tx, &binding, work, origin, on_retry_topic, parked.as_ref(), error).await
            }
        }
    }

    /// Calls the handler inside a span that continues the producer's trace.
    async fn call(
        &self,
        binding: &Binding,
        event: AnyEvent,
        meta: &EventMeta,
        conn: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        let (trace_id, parent_id) = meta
            .traceparent
            .map(|t| (format!("{:032x}", t.trace_id), format!("{:016x}", t.parent_id)))
            .unwrap_or_default();
        let span = tracing::info_span!(
            "handle",
            consumer = %self.consumer,
            event_type = binding.route.event_type(),
            topic = %meta.topic,
            partition = meta.partition,
            offset = meta.offset,
            event_id = %meta.event_id,
            attempt = meta.attempt,
            trace_id = %trace_id,
            parent_id = %parent_id,
        );
        let started = Instant::now();
        let result = binding.route.handle(event, meta, conn).instrument(span).await;
        self.metrics.handler_duration(&self.consumer, &binding.topic, started.elapsed());
        result
    }

    /// A handler failed attempt `work.attempt + 1`: back off, go to the retry topic, wait for the
    /// next tier, or dead-letter.
    #[allow(clippy::too_many_arguments)]
    async fn failed(
        &self,
        tx: &mut Transaction<'static, Any>,
        binding: &Arc<Binding>,
        work: Work,
        origin: Origin<'_>,
        on_retry_topic: bool,
        parked: Option<&Parked<'_>>,
        error: HandlerError,
    ) -> Result<Step, Abort> {
        let now = now_ms();
        let attempt = work.attempt + 1;
        let text = error.to_string();
        tracing::warn!(consumer = %self.consumer, topic = %binding.topic, offset = origin.offset, attempt, error = %text,
            "handler failed");
        let first = work.first_failure_ms.unwrap_or(now);
        match retry::plan(&self.retry, attempt, error.is_permanent(), on_retry_topic) {
            Plan::Backoff(delay) | Plan::Wait(delay) => {
                let mut again = work.clone();
                again.attempt = attempt;
                again.not_before_ms = now + millis(delay);
                again.first_failure_ms = Some(first);
                again.last_error = Some(text);
                Ok(Step { finish: Finish::Again(again), outcome: Outcome::Retried, event_time_ms: None })
            }
            Plan::RetryTopic(delay) => {
                let failure = self.failure(origin, attempt, Some(&text), Some(first), Some(now));
                let extra = [(headers::NOT_BEFORE, (now + millis(delay)).to_string())];
                let record = &work.record;
                self.outbound
                    .send(&binding.retry_topic, record, failure_headers(record, &failure, &extra))
                    .await?;
                if let Some(parked) = parked {
                    self.store.park(tx, parked, now).await?;
                }
                Ok(Step { finish: Finish::Done, outcome: Outcome::Retried, event_time_ms: None })
            }
            Plan::DeadLetter => {
                let mut work = work;
                work.first_failure_ms = Some(first);
                self.dead_letter(tx, binding, &work, origin, attempt, &text, parked, on_retry_topic).await?;
                Ok(Step { finish: Finish::Done, outcome: Outcome::DeadLettered, event_time_ms: None })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn dead_letter(
        &self,
        tx: &mut Transaction<'static, Any>,
        binding: &Binding,
        work: &Work,
        origin: Origin<'_>,
        attempts: u32,
        error: &str,
        parked: Option<&Parked<'_>>,
        on_retry_topic: bool,
    ) -> Result<(), Abort> {
        let now = now_ms();
        let first = work.first_failure_ms.unwrap_or(now);
        let failure = self.failure(origin, attempts, Some(error), Some(first), Some(now));
        let record = &work.record;
        self.outbound.send(&binding.dlq_topic, record, failure_headers(record, &failure, &[])).await?;
        tracing::error!(consumer = %self.consumer, topic = %binding.topic, partition = origin.partition,
            offset = origin.offset, attempts, error, "event dead-lettered");
        // The key's later events, held behind this one, may now proceed.
        if on_retry_topic {
            if let Some(parked) = parked {
                self.store.unpark(tx, parked).await?;
            }
        }
        Ok(())
    }

    fn failure<'a>(
        &'a self,
        origin: Origin<'a>,
        attempts: u32,
        error: Option<&'a str>,
        first_failure_ms: Option<i64>,
        last_failure_ms: Option<i64>,
    ) -> Failure<'a> {
        Failure { consumer: &self.consumer, origin, attempts, error, first_failure_ms, last_failure_ms }
    }
}

/// Where the event was first published: the record's own position, or for a record fetched from
/// the retry topic, the position its headers name.
pub(crate) fn origin<'a>(record: &'a Record, topic: &'a str, on_retry_topic: bool) -> Origin<'a> {
    if on_retry_topic {
        if let (Some(partition), Some(offset)) =
            (record.header_i64(headers::ORIGINAL_PARTITION), record.header_i64(headers::ORIGINAL_OFFSET))
        {
            return Origin { topic, partition: partition as i32, offset };
        }
    }
    Origin { topic, partition: record.partition, offset: record.offset }
}

/// A record fetched from a retry topic resumes where its headers say: attempts made, first
/// failure, and not before its due time.
pub(crate) fn resume_from_headers(work: &mut Work) {
    let record = &work.record;
    work.attempt = record.header_i64(headers::ATTEMPTS).and_then(|a| u32::try_from(a).ok()).unwrap_or(0);
    work.not_before_ms = record.header_i64(headers::NOT_BEFORE).unwrap_or(0);
    work.first_failure_ms = record.header(headers::FIRST_FAILURE_TIME).and_then(crate::dlq::parse_rfc3339);
    work.last_error = record.header(headers::ERROR).map(str::to_owned);
}

fn event_time_ms(meta: &EventMeta, record: &Record) -> Option<i64> {
    meta.time.map(|t| t.timestamp_millis()).or(record.timestamp_ms)
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}
