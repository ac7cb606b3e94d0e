//! Graceful shutdown, all within `processing.shutdown_timeout_ms`: fetching stops, the work
//! under way finishes (with the events the final commit needs to cover it), offsets are
//! committed and the group is left. What cannot finish in time is abandoned uncommitted.
//!
//! A quarter of the budget (at most 5 s) is kept for the commit and leaving the group; batches
//! get the rest. Revocations arriving meanwhile are still answered, so a rebalance is never kept
//! waiting for a consumer on its way out.

use std::{sync::atomic::Ordering, thread::JoinHandle, time::Duration};

use rdkafka::consumer::CommitMode;
use tokio::{
    sync::oneshot,
    task::JoinSet,
    time::{sleep_until, timeout_at, Instant},
};

use fanout_core::clock::now_ms;

use crate::{
    builder::Consumer,
    kafka::{self, Inbound},
    runner::Loop,
    ConsumerError,
};

impl Consumer {
    pub(crate) async fn shut_down(
        mut self,
        mut state: Loop,
        mut background: JoinSet<()>,
        poller: JoinHandle<()>,
        stop_http: oneshot::Sender<()>,
    ) -> Result<(), ConsumerError> {
        let total = Duration::from_millis(self.config.processing.shutdown_timeout_ms);
        let deadline = Instant::now() + total;
        let work_deadline = deadline - (total / 4).min(Duration::from_secs(5));
        // Waits shorter than an in-process backoff are part of the work under way; longer ones
        // (retry-topic tiers) are not waited for.
        let horizon = Duration::from_millis(self.config.retry.max_backoff_ms).min(total);
        let horizon_ms = || now_ms() + i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX / 2);
        tracing::info!(consumer = %self.config.name, in_flight = state.dispatcher.total_in_flight(), "consumer stopping");
        self.shared.draining.store(true, Ordering::Release);
        state.dispatcher.wind_down(horizon_ms());

        loop {
            self.launch(&mut state);
            let now = now_ms();
            let idle = state.dispatcher.ready(now) == 0 && state.dispatcher.next_due().is_none();
            if state.batches.is_empty() && idle {
                break;
            }
            let wake = self.next_wake(&state).min(work_deadline);
            tokio::select! {
                biased;
                () = sleep_until(work_deadline) => {
                    if !state.batches.is_empty() {
                        tracing::warn!(consumer = %self.config.name, batches = state.batches.len(),
                            "in-flight batches did not finish by the shutdown deadline; abandoned uncommitted");
                        state.batches.shutdown().await;
                    }
                    break;
                }
                Some(joined) = state.batches.join_next(), if !state.batches.is_empty() => {
                    self.finished(&mut state, joined)?;
                    state.dispatcher.wind_down(horizon_ms());
                }
                message = self.inbound.recv() => match message {
                    Some(message) => self.inbound_while_stopping(&mut state, message),
                    None => break,
                },
                () = sleep_until(wake) => {}
            }
            self.answer_revocations(&mut state, false);
        }
        while let Ok(message) = self.inbound.try_recv() {
            self.inbound_while_stopping(&mut state, message);
        }
        self.answer_revocations(&mut state, true);

        // Final offsets, synchronously, before leaving the group; only of partitions still owned
        // (a partition revoked without our answer may already be ahead under its new owner).
        let owned = self.shared.assigned.lock().map(|a| a.clone()).unwrap_or_default();
        let marks: Vec<_> =
            state.dispatcher.watermarks().into_iter().filter(|(tp, _)| owned.contains(tp)).collect();
        // Revocations during the close need not wait for this loop any more.
        self.shared.closing.store(true, Ordering::Release);
        let kafka = self.kafka.clone();
        let commit = tokio::task::spawn_blocking(move || {
            if marks.is_empty() {
                Ok(())
            } else {
                kafka::commit(&kafka, &marks, CommitMode::Sync)
            }
        });
        match timeout_at(deadline, commit).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(consumer = %self.config.name, error = %fanout_core::report(&e), "final commit failed")
            }
            Ok(Err(e)) => {
                tracing::warn!(consumer = %self.config.name, error = %e, "final commit task failed")
            }
            Err(_) => {
                tracing::warn!(consumer = %self.config.name, "final commit not done by the shutdown deadline")
            }
        }
        // The poll thread must hold the last handle: dropping it closes the consumer (leaving the
        // group), which blocks, and must not happen on an async worker.
        drop(self.kafka);
        self.shared.stop.store(true, Ordering::Release);
        drop(self.inbound);
        match timeout_at(deadline, tokio::task::spawn_blocking(move || poller.join())).await {
            Ok(Ok(Ok(()))) => {}
            Ok(_) => tracing::warn!(consumer = %self.config.name, "the poll thread ended abnormally"),
            Err(_) => {
                tracing::warn!(consumer = %self.config.name, "the group was not left by the shutdown deadline")
            }
        }
        let _ = stop_http.send(());
        background.abort_all();
        while background.join_next().await.is_some() {}
        tracing::info!(consumer = %self.config.name, "consumer stopped");
        Ok(())
    }

    /// While stopping, records are not taken any more (their offsets are not committed, so they
    /// are read again after a restart); rebalances are still served.
    fn inbound_while_stopping(&self, state: &mut Loop, message: Inbound) {
        match message {
            Inbound::Record(_) => {
                self.shared.in_channel.fetch_sub(1, Ordering::SeqCst);
            }
            other => self.inbound_message(state, other),
        }
    }
}
