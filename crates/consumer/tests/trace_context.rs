//! The handler runs inside a `handle` span that continues the producer's trace: its `trace_id`
//! and `parent_id` are those of the record's `traceparent`, on the first attempt and on an
//! attempt coming back through the retry topic alike.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::*;
use fanout_core::trace::TraceParent;
use fanout_testkit::Kafka;
use tracing::{
    field::{Field, Visit},
    span::{Attributes, Id},
    Event, Subscriber,
};
use tracing_subscriber::{layer::Context, prelude::*, registry::LookupSpan, Layer};

/// Field values as text.
#[derive(Debug, Clone, Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// An event's fields, and those of the `handle` span around it.
type Seen = (Fields, Option<Fields>);

/// What the recorder logged inside the handler.
#[derive(Debug, Clone, Default)]
struct Capture(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() == "handle" {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut own = Fields::default();
        event.record(&mut own);
        if own.0.get("message").map(String::as_str) != Some("recorder applying") {
            return;
        }
        let span = ctx.event_scope(event).and_then(|mut scope| {
            scope
                .find(|span| span.name() == "handle")
                .and_then(|span| span.extensions().get::<Fields>().cloned())
        });
        if let Ok(mut seen) = self.0.lock() {
            seen.push((own, span));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_handler_span_continues_the_producers_trace() -> TestResult {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(capture.clone()))?;

    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("consumer-trace", 1).await?;
    let (_dir, url) = sqlite();
    let producer_span = TraceParent::new_root();
    let (direct, retried) = (1_i64, 2_i64);
    let records = [Outgoing::event(&post(direct, 0)), Outgoing::event(&post(retried, 0))];
    publish_traced(&kafka, topic.name(), &records, &producer_span.to_string()).await?;

    let mut config = config(&url);
    config.retry.attempts = 1;
    config.retry.delays_ms = vec![200];
    let recorder = Recorder::default();
    recorder.script.transient.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(retried, 1);
    let running = start(config, topic.name(), recorder).await?;
    let name = running.name.clone();
    let pool = running.pool.clone();
    wait_until(Duration::from_secs(30), "both events applied", || {
        let pool = pool.clone();
        async move { Ok(effects(&pool).await? == 2) }
    })
    .await?;
    running.stop().await?;

    let seen = capture.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let trace_id = format!("{:032x}", producer_span.trace_id);
    let parent_id = format!("{:016x}", producer_span.parent_id);
    // The attempts each event's handler calls ran under. A batch with a failing event is run
    // again event by event within the same attempt, so an attempt may appear twice in a row.
    let attempts = |post_id: i64| -> Vec<String> {
        let mut attempts: Vec<String> = seen
            .iter()
            .filter(|(own, _)| own.0.get("post_id") == Some(&post_id.to_string()))
            .filter_map(|(_, span)| span.as_ref().and_then(|s| s.0.get("attempt").cloned()))
            .collect();
        attempts.dedup();
        attempts
    };
    assert_eq!(attempts(direct), ["1"], "{seen:?}");
    assert_eq!(attempts(retried), ["1", "2"], "the second attempt came through the retry topic: {seen:?}");
    for (own, span) in &seen {
        let span =
            span.as_ref().ok_or_else(|| anyhow::anyhow!("handler ran outside a handle span: {own:?}"))?;
        assert_eq!(span.0.get("trace_id"), Some(&trace_id), "{span:?}");
        assert_eq!(span.0.get("parent_id"), Some(&parent_id), "{span:?}");
        assert!(span.0.get("event_id").is_some_and(|id| records.iter().any(|r| &r.event_id == id)));
    }
    delete_derived(&kafka, &topic, &name).await;
    Ok(())
}
