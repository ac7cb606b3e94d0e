//! One batch: events taken from the dispatcher, applied in one store transaction.
//!
//! The fast path costs a handful of statements per batch, not per event: the dedupe marks of the
//! whole batch are written and checked in one multi-row `INSERT … ON CONFLICT DO NOTHING
//! RETURNING`, and each handler gets every new event of the batch in one
//! [`Handler::handle_batch`](crate::Handler::handle_batch) call. Savepoints are used only when
//! something fails: the transaction is rolled back and the batch runs again event by event, each
//! in its own savepoint, so a failing event rolls back alone and the rest commit with their dedupe
//! marks. Retry and dead-letter records are acknowledged by Kafka before the transaction that
//! finishes their source event commits, so nothing is lost between the topics.
//!
//! A key's events keep their order inside a batch: once one of them cannot finish now (a retry
//! after a backoff, a registry outage), the key's later events in the batch are not attempted; once
//! one goes to the retry topic, the later ones queue behind it there.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::{AnyConnection, Connection};

use fanout_core::{clock::now_ms, trace};

use crate::{
    config::RetrySettings,
    dispatch::{Finish, Work},
    failure::{
        self,
        plan::{self, Plan},
        Attempts, Outbound,
    },
    handler::AnyEvent,
    meta::{EventMeta, HandleSpan, Record},
    metrics::{ConsumerMetrics, Outcome, Tally},
    parked::ParkChange,
    routing::{Binding, Routes},
    store::{Parked, Store},
    DecodeError, HandlerError,
};

/// Everything a batch needs; shared by all batches of a consumer.
pub(crate) struct Engine {
    pub(crate) consumer: Arc<str>,
    pub(crate) store: Store,
    pub(crate) routes: Routes,
    pub(crate) outbound: Outbound,
    pub(crate) retry: RetrySettings,
    pub(crate) metrics: ConsumerMetrics,
    pub(crate) registry_outage: RegistryOutage,
}

/// How often a registry outage is logged: once per interval, with the number of events held
/// since the last line, instead of once per event (tens of lines a second).
const OUTAGE_LOG_INTERVAL_MS: i64 = 10_000;

/// Counts events held back by a registry outage between two log lines, and whether one is going
/// on (the `fanout_registry_outage` gauge).
#[derive(Debug, Default)]
pub(crate) struct RegistryOutage {
    last_logged_ms: std::sync::atomic::AtomicI64,
    held: std::sync::atomic::AtomicU64,
    active: std::sync::atomic::AtomicBool,
}

impl RegistryOutage {
    /// An event was held for the registry: the outage begins, if it had not.
    fn begin(&self, gauge: &prometheus::IntGauge) {
        if !self.active.swap(true, std::sync::atomic::Ordering::Relaxed) {
            gauge.set(1);
        }
    }

    /// Events decoded: an outage that was going on is over. One relaxed load per batch while
    /// none is.
    fn end(&self, gauge: impl FnOnce() -> prometheus::IntGauge) {
        use std::sync::atomic::Ordering::Relaxed;
        if self.active.load(Relaxed) && self.active.swap(false, Relaxed) {
            gauge().set(0);
        }
    }

    /// Counts one held event; `Some(events held since the last line)` when a line is due.
    fn log_due(&self, now_ms: i64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let held = self.held.fetch_add(1, Relaxed) + 1;
        let last = self.last_logged_ms.load(Relaxed);
        if now_ms - last < OUTAGE_LOG_INTERVAL_MS
            || self.last_logged_ms.compare_exchange(last, now_ms, Relaxed, Relaxed).is_err()
        {
            return None;
        }
        self.held.fetch_sub(held, Relaxed);
        Some(held)
    }
}

/// What a batch hands back to the runner: each event's verdict, in the order taken, and the
/// changes to the set of keys held in the retry path that its transaction committed.
#[derive(Debug, Default)]
pub(crate) struct Finished {
    pub(crate) verdicts: Vec<(Work, Finish)>,
    pub(crate) parked: Vec<ParkChange>,
}

/// The event a failure is handled for: its binding, whether it came from the retry topic, and
/// its id.
#[derive(Clone, Copy)]
struct Subject<'a> {
    binding: &'a Arc<Binding>,
    on_retry_topic: bool,
    event_id: &'a str,
}

/// Decoded events with their metadata, as one handler call takes them.
type Events = Vec<(AnyEvent, EventMeta)>;

/// What the decoder made of one taken event.
enum Decoded {
    /// Fetched from a topic no handler reads: nothing can apply it, and holding it would stall
    /// the partition forever.
    Unbound,
    Event(AnyEvent),
    Failed(DecodeError),
}

/// One taken event on its way through the batch.
struct Item {
    work: Work,
    binding: Option<Arc<Binding>>,
    on_retry_topic: bool,
    decoded: Decoded,
}

/// Failures that are not the event's: the whole batch is rolled back and runs again.
#[derive(Debug, thiserror::Error)]
enum Abort {
    #[error("store")]
    Store(#[from] sqlx::Error),
    #[error("kafka")]
    Kafka(#[from] failure::SendError),
}

/// The batch's running verdicts, and the per-key order rules applied while walking it.
#[derive(Default)]
struct Walk {
    verdicts: Vec<(Work, Finish)>,
    parked: Vec<ParkChange>,
    tally: Tally,
    /// Keys (by topic) whose earlier event in this batch did not finish: later ones are skipped.
    blocked: HashSet<(String, Vec<u8>)>,
    /// Keys (by main topic) that went into the retry path in this batch: later ones queue there.
    parked_now: HashSet<(String, Vec<u8>)>,
    /// Applied events' times, for the end-to-end latency once the transaction commits.
    applied_times: Vec<(Arc<Binding>, i64)>,
}

impl Walk {
    fn blocked(&self, item: &Item) -> bool {
        match &item.work.record.key {
            Some(key) if !self.blocked.is_empty() => {
                self.blocked.contains(&(item.work.record.topic.clone(), key.clone()))
            }
            _ => false,
        }
    }

    fn block(&mut self, record: &Record) {
        if let Some(key) = &record.key {
            self.blocked.insert((record.topic.clone(), key.clone()));
        }
    }

    fn held_back(&self, item: &Item, binding: &Binding) -> bool {
        if item.on_retry_topic {
            return false;
        }
        item.work.held_back
            || match &item.work.record.key {
                Some(key) if !self.parked_now.is_empty() => {
                    self.parked_now.contains(&(binding.topic.clone(), key.clone()))
                }
                _ => false,
            }
    }

    fn finish(&mut self, work: Work, finish: Finish, topic: &str, outcome: Option<Outcome>) {
        if let Some(outcome) = outcome {
            self.tally.add(topic, outcome);
        }
        self.verdicts.push((work, finish));
    }
}

impl Engine {
    /// Runs one batch to its end; returns every event with its verdict, for the dispatcher.
    pub(crate) async fn run(self: Arc<Self>, works: Vec<Work>) -> Finished {
        let mut items = Vec::with_capacity(works.len());
        // Decode outside the transaction: a slow registry lookup must not hold store locks.
        for work in works {
            items.push(self.decode(work).await);
        }
        // On SQLite the next batch decodes while this one writes, then waits its turn.
        let _turn = self.store.write_turn().await;
        let walk = match self.fast(&mut items).await {
            // A handler failed: run the batch again event by event, each in its own savepoint.
            Ok(None) => self.one_by_one(&mut items).await,
            other => other.map(|walk| walk.unwrap_or_default()),
        };
        match walk {
            Ok(walk) => self.committed(walk),
            Err(abort) => {
                let cause = std::error::Error::source(&abort).map(ToString::to_string).unwrap_or_default();
                tracing::warn!(consumer = %self.consumer, error = %abort, %cause, events = items.len(),
                    "batch rolled back; its events will run again");
                self.rolled_back(items)
            }
        }
    }

    async fn decode(&self, work: Work) -> Item {
        let Some((binding, on_retry_topic)) = self.routes.get(&work.record.topic).cloned() else {
            return Item { work, binding: None, on_retry_topic: false, decoded: Decoded::Unbound };
        };
        let decoded = match binding.route.decode(work.record.payload.as_deref()).await {
            Ok(event) => Decoded::Event(event),
            Err(error) => Decoded::Failed(error),
        };
        Item { work, binding: Some(binding), on_retry_topic, decoded }
    }

    /// Counts the outcomes and latencies of a committed batch and hands its verdicts back.
    fn committed(&self, walk: Walk) -> Finished {
        walk.tally.record(&self.metrics, &self.consumer);
        if !walk.applied_times.is_empty() {
            let committed_ms = now_ms();
            let mut by_topic: Vec<(&str, prometheus::Histogram)> = Vec::new();
            for (binding, time_ms) in &walk.applied_times {
                let topic = binding.topic.as_str();
                let histogram = match by_topic.iter().find(|(t, _)| *t == topic) {
                    Some((_, h)) => h.clone(),
                    None => {
                        let h = self.metrics.end_to_end_histogram(&self.consumer, topic);
                        by_topic.push((topic, h.clone()));
                        h
                    }
                };
                histogram.observe(committed_ms.saturating_sub(*time_ms).max(0) as f64 / 1_000.0);
            }
        }
        Finished { verdicts: walk.verdicts, parked: walk.parked }
    }

    /// The batch could not commit: each key's first event runs again after an outage backoff
    /// (not counted as an attempt), its later ones wait behind it.
    fn rolled_back(&self, items: Vec<Item>) -> Finished {
        let mut walk = Walk::default();
        for item in items {
            let topic = item.binding.as_ref().map_or(item.work.record.topic.clone(), |b| b.topic.clone());
            if walk.blocked(&item) {
                walk.finish(item.work, Finish::Skipped, &topic, None);
                continue;
            }
            walk.block(&item.work.record);
            let again = self.later(&item.work);
            walk.finish(item.work, again, &topic, Some(Outcome::Failed));
        }
        walk.tally.record(&self.metrics, &self.consumer);
        Finished { verdicts: walk.verdicts, parked: Vec::new() }
    }

    /// The event again after an outage backoff, without counting an attempt.
    fn later(&self, work: &Work) -> Finish {
        let mut again = work.clone();
        again.not_before_ms = now_ms() + millis(plan::outage_backoff(&self.retry));
        Finish::Again(again)
    }

    /// Applies the batch with one dedupe statement and one handler call per binding. `None` when a
    /// handler failed (the transaction is rolled back, nothing was sent): the caller runs the
    /// batch event by event to find the failing events.
    async fn fast(&self, items: &mut [Item]) -> Result<Option<Walk>, Abort> {
        // First pass, no I/O: which events go to the handlers (the rest are handled one by one
        // below, in order).
        let mut first = Walk::default();
        let mut apply: Vec<usize> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if first.blocked(item) {
                continue;
            }
            match (&item.decoded, &item.binding) {
                (Decoded::Failed(DecodeError::Unavailable(_)), _) => first.block(&item.work.record),
                (Decoded::Event(_), Some(binding)) if !first.held_back(item, binding) => apply.push(index),
                _ => {}
            }
        }
        let mut walk = Walk::default();
        let mut tx = self.store.begin().await?;
        let now = now_ms();
        // Dedupe marks of the whole batch in one statement; a repeated id within the batch is
        // marked once and its later copies are duplicates.
        let metas: Vec<EventMeta> = apply.iter().map(|&i| self.meta(&items[i])).collect();
        let mut seen = HashSet::with_capacity(metas.len());
        let ids: Vec<&str> =
            metas.iter().map(|m| m.event_id.as_str()).filter(|id| seen.insert(*id)).collect();
        let fresh = self.store.mark_processed_many(&mut tx, &ids, now).await?;
        let mut first_copy: HashSet<&str> = HashSet::with_capacity(fresh.len());
        let is_new: Vec<bool> = metas
            .iter()
            .map(|m| fresh.contains(&m.event_id) && first_copy.insert(m.event_id.as_str()))
            .collect();
        // What the walk below needs of each of these events, so their metadata itself can move
        // to the handler: whether it was new, its time, and its id where it must be unparked.
        let after: Vec<(bool, Option<i64>, Option<String>)> = apply
            .iter()
            .zip(&metas)
            .zip(&is_new)
            .map(|((&index, meta), &new)| {
                let item = &items[index];
                (
                    new,
                    event_time_ms(meta, &item.work.record),
                    item.on_retry_topic.then(|| meta.event_id.clone()),
                )
            })
            .collect();

        // One handler call per binding, with its new events in batch order.
        let mut groups: Vec<(Arc<Binding>, Events)> = Vec::new();
        for ((&index, meta), new) in apply.iter().zip(metas).zip(&is_new) {
            if !*new {
                continue;
            }
            let item = &mut items[index];
            let Some(binding) = item.binding.clone() else { continue };
            let Decoded::Event(event) = std::mem::replace(&mut item.decoded, Decoded::Unbound) else {
                continue;
            };
            match groups.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &binding)) {
                Some((_, events)) => events.push((event, meta)),
                None => groups.push((binding, vec![(event, meta)])),
            }
        }
        let groups_empty = groups.is_empty();
        for (binding, events) in groups {
            if self.call(&binding, events, &mut tx).await.is_err() {
                tx.rollback().await?;
                // The events were handed to the handler; decode them again for the slow path.
                for item in
                    items.iter_mut().filter(|i| matches!(i.decoded, Decoded::Unbound) && i.binding.is_some())
                {
                    let work = item.work.clone();
                    *item = self.decode(work).await;
                }
                return Ok(None);
            }
        }

        if !groups_empty {
            self.registry_outage.end(|| self.metrics.registry_outage.with_label_values(&[&self.consumer]));
        }

        // Everything the handlers applied stays; now the events that needed no handler.
        let mut apply_at = apply.iter().zip(after).peekable();
        for (index, item) in items.iter().enumerate() {
            let topic = topic_of(item);
            if apply_at.peek().is_some_and(|(&i, _)| i == index) {
                let Some((_, (new, time, unpark_id))) = apply_at.next() else { continue };
                let Some(binding) = item.binding.clone() else { continue };
                if let Some(event_id) = unpark_id {
                    self.unpark(&mut tx, &mut walk, &binding, &item.work.record, &event_id).await?;
                }
                if new {
                    if let Some(time) = time {
                        walk.applied_times.push((binding, time));
                    }
                    walk.finish(item.work.clone(), Finish::Done, topic, Some(Outcome::Applied));
                } else {
                    walk.finish(item.work.clone(), Finish::Done, topic, Some(Outcome::Duplicate));
                }
                continue;
            }
            self.special(&mut tx, &mut walk, item).await?;
        }
        tx.commit().await?;
        Ok(Some(walk))
    }

    /// An event that needs no handler call, or cannot have one now: skipped behind its key,
    /// unbound, waiting for the registry, dead-lettered as undecodable, or held back behind its
    /// key in the retry path.
    async fn special(&self, tx: &mut AnyConnection, walk: &mut Walk, item: &Item) -> Result<(), Abort> {
        let topic = topic_of(item);
        let work = item.work.clone();
        if walk.blocked(item) {
            walk.finish(work, Finish::Skipped, topic, None);
            return Ok(());
        }
        let Some(binding) = item.binding.clone() else {
            tracing::warn!(topic = %item.work.record.topic, "record from a topic without a handler; skipped");
            walk.finish(work, Finish::Done, topic, None);
            return Ok(());
        };
        match &item.decoded {
            Decoded::Failed(DecodeError::Unavailable(reason)) => {
                self.metrics.registry_unavailable.with_label_values(&[&self.consumer]).inc();
                self.registry_outage
                    .begin(&self.metrics.registry_outage.with_label_values(&[&self.consumer]));
                if let Some(held) = self.registry_outage.log_due(now_ms()) {
                    tracing::warn!(consumer = %self.consumer, %reason, held,
                        "schema registry unavailable; events are held and decoded again (logged at most every 10 s)");
                }
                walk.block(&work.record);
                let again = self.later(&work);
                walk.finish(work, again, topic, Some(Outcome::Failed));
            }
            Decoded::Failed(error) => {
                let text = format!("undecodable: {error}");
                let meta = self.meta(item);
                let subject = Subject {
                    binding: &binding,
                    on_retry_topic: item.on_retry_topic,
                    event_id: &meta.event_id,
                };
                self.dead_letter(tx, walk, subject, &work, work.attempt + 1, &text).await?;
                walk.finish(work, Finish::Done, topic, Some(Outcome::DeadLettered));
            }
            Decoded::Event(_) | Decoded::Unbound => {
                // Held back: an earlier event of this key waits in the retry path, so this one
                // queues behind it there instead of overtaking it.
                let meta = self.meta(item);
                let origin = failure::origin(&work.record, &binding.topic, item.on_retry_topic);
                self.outbound.hold_back(&binding, &work.record, origin, work.attempt, now_ms()).await?;
                self.park(tx, walk, &binding, &work.record, &meta.event_id, origin.offset).await?;
                walk.finish(work, Finish::Done, topic, Some(Outcome::Parked));
            }
        }
        Ok(())
    }

    /// The slow path: each event in its own savepoint, so a failing one rolls back alone.
    async fn one_by_one(&self, items: &mut [Item]) -> Result<Walk, Abort> {
        let mut walk = Walk::default();
        let mut tx = self.store.begin().await?;
        for item in items.iter_mut() {
            let applicable = match (&item.decoded, &item.binding) {
                (Decoded::Event(_), Some(binding)) => !walk.blocked(item) && !walk.held_back(item, binding),
                _ => false,
            };
            if !applicable {
                self.special(&mut tx, &mut walk, item).await?;
                continue;
            }
            let Some(binding) = item.binding.clone() else { continue };
            let Decoded::Event(event) = std::mem::replace(&mut item.decoded, Decoded::Unbound) else {
                continue;
            };
            let topic = binding.topic.clone();
            let meta = self.meta(item);
            let work = item.work.clone();
            let mut savepoint = Connection::begin(&mut *tx).await?;
            if self
                .store
                .mark_processed_many(&mut savepoint, &[meta.event_id.as_str()], now_ms())
                .await?
                .is_empty()
            {
                if item.on_retry_topic {
                    self.unpark(&mut savepoint, &mut walk, &binding, &work.record, &meta.event_id).await?;
                }
                savepoint.commit().await?;
                walk.finish(work, Finish::Done, &topic, Some(Outcome::Duplicate));
                continue;
            }
            match self.call(&binding, vec![(event, meta.clone())], &mut savepoint).await {
                Ok(()) => {
                    if item.on_retry_topic {
                        self.unpark(&mut savepoint, &mut walk, &binding, &work.record, &meta.event_id)
                            .await?;
                    }
                    savepoint.commit().await?;
                    if let Some(time) = event_time_ms(&meta, &work.record) {
                        walk.applied_times.push((binding, time));
                    }
                    walk.finish(work, Finish::Done, &topic, Some(Outcome::Applied));
                }
                Err(error) => {
                    savepoint.rollback().await?;
                    let subject = Subject {
                        binding: &binding,
                        on_retry_topic: item.on_retry_topic,
                        event_id: &meta.event_id,
                    };
                    self.failed(&mut tx, &mut walk, subject, work, error).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(walk)
    }

    fn meta(&self, item: &Item) -> EventMeta {
        let record = &item.work.record;
        let topic = item.binding.as_ref().map_or(record.topic.as_str(), |b| b.topic.as_str());
        let origin = failure::origin(record, topic, item.on_retry_topic);
        EventMeta::of(record, origin, item.work.attempt + 1, &self.consumer)
    }

    /// Calls the handler with `events`, timing the call. When spans are exported, each event
    /// has its `handle` span, a child of its producer's, open during the call (whether or not
    /// the handler overrides `handle_batch`) and marked as failed when the call fails.
    async fn call(
        &self,
        binding: &Binding,
        mut events: Vec<(AnyEvent, EventMeta)>,
        conn: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        let spans: Vec<tracing::Span> = if trace::exporter().is_some() {
            let event_type = binding.route.event_type();
            events
                .iter_mut()
                .map(|(_, meta)| {
                    let span = meta.new_span(event_type);
                    meta.span = HandleSpan(Some(span.clone()));
                    span
                })
                .collect()
        } else {
            Vec::new()
        };
        let started = Instant::now();
        let result = binding.route.handle_batch(events, conn).await;
        self.metrics.handler_duration(&self.consumer, &binding.topic, started.elapsed());
        if let (Err(error), false) = (&result, spans.is_empty()) {
            let message = match spans.len() {
                1 => error.describe(),
                _ => "the batch failed; its events run again one by one".to_owned(),
            };
            for span in &spans {
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_message", message.as_str());
            }
        }
        result
    }

    /// A handler failed attempt `work.attempt + 1`: back off, go to the retry topic, wait for the
    /// next tier, or dead-letter.
    async fn failed(
        &self,
        tx: &mut AnyConnection,
        walk: &mut Walk,
        subject: Subject<'_>,
        work: Work,
        error: HandlerError,
    ) -> Result<(), Abort> {
        let now = now_ms();
        let attempt = work.attempt + 1;
        let text = error.describe();
        let binding = subject.binding;
        let origin = failure::origin(&work.record, &binding.topic, subject.on_retry_topic);
        tracing::warn!(consumer = %self.consumer, topic = %binding.topic, offset = origin.offset, attempt, error = %text,
            "handler failed");
        let first = work.first_failure_ms.unwrap_or(now);
        match plan::plan(&self.retry, attempt, error.is_permanent(), subject.on_retry_topic) {
            Plan::Backoff(delay) | Plan::Wait(delay) => {
                let mut again = work.clone();
                again.attempt = attempt;
                again.not_before_ms = now + millis(delay);
                again.first_failure_ms = Some(first);
                again.last_error = Some(text);
                walk.block(&work.record);
                walk.finish(work, Finish::Again(again), &binding.topic, Some(Outcome::Retried));
            }
            Plan::RetryTopic(delay) => {
                let failed = Attempts {
                    origin,
                    attempts: attempt,
                    error: &text,
                    first_failure_ms: first,
                    last_failure_ms: now,
                };
                self.outbound.retry(binding, &work.record, failed, now + millis(delay)).await?;
                self.park(tx, walk, binding, &work.record, subject.event_id, origin.offset).await?;
                walk.finish(work, Finish::Done, &binding.topic, Some(Outcome::Retried));
            }
            Plan::DeadLetter => {
                let mut work = work;
                work.first_failure_ms = Some(first);
                self.dead_letter(tx, walk, subject, &work, attempt, &text).await?;
                walk.finish(work, Finish::Done, &binding.topic, Some(Outcome::DeadLettered));
            }
        }
        Ok(())
    }

    /// Sends the event to its dead-letter topic after `attempts` attempts, the last failing with
    /// `error`; the key's later events, held behind it, may then proceed.
    async fn dead_letter(
        &self,
        tx: &mut AnyConnection,
        walk: &mut Walk,
        subject: Subject<'_>,
        work: &Work,
        attempts: u32,
        error: &str,
    ) -> Result<(), Abort> {
        let now = now_ms();
        let binding = subject.binding;
        let origin = failure::origin(&work.record, &binding.topic, subject.on_retry_topic);
        let first_failure_ms = work.first_failure_ms.unwrap_or(now);
        let failed = Attempts { origin, attempts, error, first_failure_ms, last_failure_ms: now };
        self.outbound.dead_letter(binding, &work.record, failed).await?;
        tracing::error!(consumer = %self.consumer, topic = %binding.topic, partition = origin.partition,
            offset = origin.offset, attempts, error, "event dead-lettered");
        if subject.on_retry_topic {
            self.unpark(tx, walk, binding, &work.record, subject.event_id).await?;
        }
        Ok(())
    }

    /// Records durably (and for the runner) that `event_id` of the record's key waits in the
    /// retry path.
    async fn park(
        &self,
        tx: &mut AnyConnection,
        walk: &mut Walk,
        binding: &Binding,
        record: &Record,
        event_id: &str,
        offset: i64,
    ) -> Result<(), Abort> {
        let Some(key) = &record.key else { return Ok(()) };
        let key_hex = hex::encode(key);
        let parked = Parked { topic: &binding.topic, key: &key_hex, event_id, offset };
        self.store.park(tx, &parked, now_ms()).await?;
        walk.parked_now.insert((binding.topic.clone(), key.clone()));
        walk.parked.push(ParkChange::Park {
            topic: binding.topic.clone(),
            key: key.clone(),
            event_id: event_id.to_owned(),
        });
        Ok(())
    }

    /// Records that `event_id` left the retry path (applied, duplicate or dead-lettered).
    async fn unpark(
        &self,
        tx: &mut AnyConnection,
        walk: &mut Walk,
        binding: &Binding,
        record: &Record,
        event_id: &str,
    ) -> Result<(), Abort> {
        let Some(key) = &record.key else { return Ok(()) };
        let key_hex = hex::encode(key);
        let parked = Parked { topic: &binding.topic, key: &key_hex, event_id, offset: 0 };
        self.store.unpark(tx, &parked).await?;
        walk.parked.push(ParkChange::Unpark {
            topic: binding.topic.clone(),
            key: key.clone(),
            event_id: event_id.to_owned(),
        });
        Ok(())
    }
}

/// The topic an event is counted under: its binding's main topic, else the one it came from.
fn topic_of(item: &Item) -> &str {
    item.binding.as_ref().map_or(item.work.record.topic.as_str(), |b| b.topic.as_str())
}

fn event_time_ms(meta: &EventMeta, record: &Record) -> Option<i64> {
    meta.time.map(|t| t.timestamp_millis()).or(record.timestamp_ms)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_outage_is_logged_once_per_interval_with_the_events_held_meanwhile() {
        let outage = RegistryOutage::default();
        let start = 1_000_000;
        assert_eq!(outage.log_due(start), Some(1), "the first held event is logged");
        for i in 1..=32 {
            assert_eq!(outage.log_due(start + i), None, "then silence within the interval");
        }
        assert_eq!(outage.log_due(start + OUTAGE_LOG_INTERVAL_MS), Some(33), "with the count since");
        assert_eq!(outage.log_due(start + OUTAGE_LOG_INTERVAL_MS + 1), None);
    }
}
