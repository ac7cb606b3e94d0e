//! The run loop: records in from the poll thread, batches out to the store, finished offsets
//! committed, revocations drained; then the shutdown (in `shutdown.rs`).
//!
//! One task owns the [`Dispatcher`], so the bookkeeping needs no locks; batches run as tasks of a
//! `JoinSet` owned by the loop, so dropping the run future (a crash, in tests) aborts them and
//! their uncommitted transactions roll back.

use std::{
    collections::HashMap,
    future::Future,
    sync::{atomic::Ordering, mpsc::SyncSender},
    time::Duration,
};

use rdkafka::consumer::CommitMode;
use tokio::{
    task::JoinSet,
    time::{interval, sleep_until, Instant, MissedTickBehavior},
};

use fanout_core::clock::now_ms;

use crate::{
    batch::Finished,
    builder::Consumer,
    dispatch::{Dispatcher, Tp, Work},
    failure::resume_from_headers,
    kafka::{self, Inbound},
    parked::ParkedKeys,
    ConsumerError,
};

/// A revocation waiting for its partitions' in-flight work.
struct Revoking {
    tps: Vec<Tp>,
    reply: SyncSender<Vec<(Tp, i64)>>,
    deadline: Instant,
}

pub(crate) struct Loop {
    pub(crate) dispatcher: Dispatcher,
    pub(crate) batches: JoinSet<Finished>,
    revoking: Vec<Revoking>,
    committed: HashMap<Tp, i64>,
    linger_until: Option<Instant>,
    /// Keys held in the retry path; see `parked.rs`.
    parked: ParkedKeys,
    /// False from an assignment until the parked keys were read again: no batch starts before.
    parked_loaded: bool,
    /// When to try reading them again after the store failed to answer.
    parked_retry_at: Option<Instant>,
    /// The in-flight gauge, looked up once.
    in_flight_gauge: prometheus::IntGauge,
    /// Records dropped on arrival because they were already buffered.
    refetched: prometheus::IntCounter,
}

/// Most inbound messages taken in one turn of the loop: a burst of records costs one turn, and
/// batches still start between bursts.
const INBOUND_BURST: usize = 1_024;

/// How long to wait before reading the parked keys again when the store did not answer.
const PARKED_RETRY: Duration = Duration::from_secs(1);

impl Consumer {
    /// Consumes until `shutdown` completes, then stops fetching, lets in-flight work finish,
    /// commits the finished offsets and leaves the group, all within
    /// `processing.shutdown_timeout_ms` (see [`crate::ProcessingSettings::shutdown_timeout_ms`]).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<(), ConsumerError> {
        let producer_config = self.config.consumer_client_config();
        // Refused credentials never heal by waiting: stop now, saying so. An unreachable cluster
        // may come back, so the runtime starts anyway and librdkafka keeps trying.
        match fanout_kafka::check_cluster(&producer_config, Duration::from_secs(10)).await {
            Err(error @ fanout_kafka::ConnectError::Authentication { .. }) => {
                return Err(ConsumerError::Connect(error))
            }
            Err(error) => {
                tracing::warn!(consumer = %self.config.name, error = %fanout_core::report(&error), "Kafka does not answer yet")
            }
            Ok(()) => {}
        }
        for binding in self.engine.routes.bindings() {
            kafka::ensure_topics(
                &producer_config,
                &binding.topic,
                &[&binding.retry_topic, &binding.dlq_topic],
            )
            .await
            .map_err(ConsumerError::Topics)?;
        }
        self.subscribe()?;
        tracing::info!(consumer = %self.config.name, topics = ?self.main_topics, http = %self.http_addr, "consumer started");

        let mut background = JoinSet::new();
        let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
        let listener = self.listener.take();
        let router = std::mem::take(&mut self.router);
        background.spawn(async move {
            let Some(listener) = listener else { return };
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = http_stopped.await;
                })
                .await;
        });
        let store = self.engine.store.clone();
        let retention_ms = i64::try_from(self.config.store.dedupe_retention_hours.saturating_mul(3_600_000))
            .unwrap_or(i64::MAX);
        background.spawn(async move {
            // Every tenth of the retention, at most hourly: marks live at most 10% past it.
            let period =
                Duration::from_millis(u64::try_from(retention_ms / 10).unwrap_or(1).clamp(60_000, 3_600_000));
            let mut tick = interval(period);
            loop {
                tick.tick().await;
                match store.expire(now_ms().saturating_sub(retention_ms)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(expired = n, "dedupe marks expired"),
                    Err(e) => {
                        tracing::warn!(error = %fanout_core::report(&e), "could not expire dedupe marks")
                    }
                }
            }
        });

        let poller = {
            let kafka = self.kafka.clone();
            let max_buffered = self.config.processing.max_buffered;
            std::thread::Builder::new()
                .name(format!("fanout-poll-{}", self.config.name))
                .spawn(move || kafka::poll_loop(kafka, max_buffered))
                .map_err(|e| ConsumerError::Task(format!("cannot start the poll thread: {e}")))?
        };

        let mut state = Loop {
            dispatcher: Dispatcher::new(self.config.processing.key_parallelism),
            batches: JoinSet::new(),
            revoking: Vec::new(),
            committed: HashMap::new(),
            linger_until: None,
            parked: ParkedKeys::default(),
            parked_loaded: false,
            parked_retry_at: None,
            refetched: self.engine.metrics.refetched.with_label_values(&[self.config.name.as_str()]),
            in_flight_gauge: self.engine.metrics.in_flight.with_label_values(&[self.config.name.as_str()]),
        };
        let mut commit_tick = interval(self.config.commit_interval());
        commit_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            if !state.parked_loaded {
                self.load_parked(&mut state).await;
            }
            self.launch(&mut state);
            let wake = self.next_wake(&state);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                message = self.inbound.recv() => match message {
                    Some(message) => {
                        self.inbound_message(&mut state, message);
                        for _ in 1..INBOUND_BURST {
                            let Ok(message) = self.inbound.try_recv() else { break };
                            self.inbound_message(&mut state, message);
                        }
                    }
                    None => return Err(ConsumerError::Task("the poll thread stopped".into())),
                },
                Some(joined) = state.batches.join_next(), if !state.batches.is_empty() => {
                    self.finished(&mut state, joined)?;
                }
                _ = commit_tick.tick() => self.commit(&mut state, CommitMode::Async),
                () = sleep_until(wake) => {}
            }
            self.answer_revocations(&mut state, false);
            self.buffered(&state);
        }

        self.shut_down(state, background, poller, stop_http).await
    }

    /// Tells the poll thread (and the gauge) how many records the runner holds.
    pub(crate) fn buffered(&self, state: &Loop) {
        let queued = state.dispatcher.queued();
        self.shared.buffered.store(queued, Ordering::SeqCst);
        self.shared.room_made(self.config.processing.max_buffered);
        state.in_flight_gauge.set(i64::try_from(queued).unwrap_or(i64::MAX));
    }

    /// Reads the parked keys from the store (after an assignment, before any batch starts).
    pub(crate) async fn load_parked(&self, state: &mut Loop) {
        if state.parked_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        match self.engine.store.parked_keys().await {
            Ok(rows) => {
                state.parked = ParkedKeys::from_rows(rows);
                state.parked_loaded = true;
                state.parked_retry_at = None;
            }
            Err(e) => {
                tracing::warn!(consumer = %self.config.name, error = %fanout_core::report(&e),
                    "cannot read the parked keys; no event is applied until the store answers");
                state.parked_retry_at = Some(Instant::now() + PARKED_RETRY);
            }
        }
    }

    pub(crate) fn inbound_message(&self, state: &mut Loop, message: Inbound) {
        match message {
            Inbound::Record(record) => {
                self.shared.in_channel.fetch_sub(1, Ordering::SeqCst);
                let on_retry_topic = self.engine.routes.is_retry_topic(&record.topic);
                let mut work = Work::new(record);
                if on_retry_topic {
                    resume_from_headers(&mut work);
                }
                if !state.dispatcher.push(work) {
                    state.refetched.inc();
                }
            }
            Inbound::Assigned(tps) => {
                for tp in tps {
                    state.dispatcher.assign(tp);
                }
                // Another instance may have parked keys of these partitions.
                state.parked_loaded = false;
            }
            Inbound::Revoke { tps, reply } => {
                for tp in &tps {
                    state.dispatcher.drain(tp);
                }
                let deadline =
                    Instant::now() + Duration::from_millis(self.config.processing.drain_timeout_ms);
                state.revoking.push(Revoking { tps, reply, deadline });
            }
        }
    }

    /// Starts batches while the store has a free writer and work is ready. With no linger (the
    /// default) a batch starts at once with what is ready, and whatever arrives while it runs
    /// makes the next one: batches grow with the load by themselves. A linger makes a partial
    /// batch wait up to `batch_linger_ms` to fill.
    pub(crate) fn launch(&self, state: &mut Loop) {
        let processing = &self.config.processing;
        // SQLite has one writer: a second batch decodes while the first writes, then waits its
        // turn; more would only wait longer.
        let writers =
            if self.engine.store.single_writer() { 2 } else { self.config.store.max_connections as usize };
        while state.batches.len() < writers && state.parked_loaded {
            let now = now_ms();
            if processing.batch_linger_ms > 0 && state.dispatcher.ready(now) < processing.batch_size {
                match state.linger_until {
                    None => {
                        state.linger_until =
                            Some(Instant::now() + Duration::from_millis(processing.batch_linger_ms));
                        return;
                    }
                    Some(until) if Instant::now() < until => return,
                    Some(_) => {}
                }
            }
            let mut works = state.dispatcher.take(now, processing.batch_size);
            if works.is_empty() {
                state.linger_until = None;
                return;
            }
            state.linger_until = None;
            if !state.parked.is_empty() {
                for work in &mut works {
                    work.held_back = self.held_back(&state.parked, work);
                }
            }
            state.batches.spawn(self.engine.clone().run(works));
        }
    }

    /// True when `work`, fetched from a main topic, has a key with an earlier event waiting in
    /// the retry path.
    fn held_back(&self, parked: &ParkedKeys, work: &Work) -> bool {
        let record = &work.record;
        match (self.engine.routes.get(&record.topic), &record.key) {
            (Some((binding, false)), Some(key)) => parked.contains(&binding.topic, key),
            _ => false,
        }
    }

    pub(crate) fn next_wake(&self, state: &Loop) -> Instant {
        let now = Instant::now();
        let mut wake = now + Duration::from_secs(1);
        if let Some(due) = state.dispatcher.next_due() {
            let delta = u64::try_from(due - now_ms()).unwrap_or(0);
            wake = wake.min(now + Duration::from_millis(delta));
        }
        if let Some(at) = state.parked_retry_at {
            wake = wake.min(at);
        }
        if let Some(until) = state.linger_until {
            wake = wake.min(until);
        }
        for revoking in &state.revoking {
            wake = wake.min(revoking.deadline);
        }
        wake
    }

    pub(crate) fn finished(
        &self,
        state: &mut Loop,
        joined: Result<Finished, tokio::task::JoinError>,
    ) -> Result<(), ConsumerError> {
        match joined {
            Ok(finished) => {
                for (work, finish) in finished.verdicts {
                    state.dispatcher.finish(&work, finish);
                }
                for change in finished.parked {
                    state.parked.apply(change);
                }
                Ok(())
            }
            // A panicking handler leaves its batch's events unfinished: their offsets are never
            // committed, so they are redelivered after a restart. Stopping is the honest answer.
            Err(e) if e.is_panic() => Err(ConsumerError::Task(format!("a batch panicked: {e}"))),
            Err(_) => Ok(()),
        }
    }

    /// Commits every watermark that moved since the last commit.
    fn commit(&self, state: &mut Loop, mode: CommitMode) {
        let moved: Vec<(Tp, i64)> = state
            .dispatcher
            .watermarks()
            .into_iter()
            .filter(|(tp, mark)| state.committed.get(tp) != Some(mark))
            .collect();
        if moved.is_empty() {
            return;
        }
        match kafka::commit(&self.kafka, &moved, mode) {
            Ok(()) => state.committed.extend(moved),
            Err(e) => {
                tracing::warn!(consumer = %self.config.name, error = %fanout_core::report(&e), "offset commit failed; retried next tick")
            }
        }
    }

    /// Answers revocations whose partitions have drained or whose deadline passed (or all, when
    /// `now`): the watermark never passes unfinished work, so committing it is always safe.
    pub(crate) fn answer_revocations(&self, state: &mut Loop, all: bool) {
        let now = Instant::now();
        let mut pending = Vec::new();
        for revoking in std::mem::take(&mut state.revoking) {
            let drained = revoking.tps.iter().all(|tp| state.dispatcher.in_flight(tp) == 0);
            if !(all || drained || now >= revoking.deadline) {
                pending.push(revoking);
                continue;
            }
            let marks: Vec<(Tp, i64)> = revoking
                .tps
                .iter()
                .filter_map(|tp| state.dispatcher.watermark(tp).map(|mark| (tp.clone(), mark)))
                .collect();
            for tp in &revoking.tps {
                state.dispatcher.remove(tp);
                state.committed.remove(tp);
            }
            // The poll thread may have stopped waiting; then the offsets are simply not committed.
            let _ = revoking.reply.send(marks);
        }
        state.revoking = pending;
    }
}
