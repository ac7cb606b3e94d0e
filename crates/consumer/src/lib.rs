//! The runtime a team uses to deploy a Fanout consumer: it writes a [`Handler`] and a config
//! file; the runtime gives it a consumer group, exactly-once effects, retries, dead letters,
//! metrics, health endpoints and graceful shutdown.
//!
//! ```no_run
//! use fanout_consumer::{
//!     async_trait, Consumer, ConsumerConfig, EventMeta, Handler, HandlerError, RegistryDecoder,
//! };
//! use fanout_events::PostPublished;
//!
//! #[derive(Debug)]
//! struct Rewards;
//!
//! #[async_trait]
//! impl Handler for Rewards {
//!     type Event = PostPublished;
//!
//!     async fn handle(
//!         &self,
//!         event: PostPublished,
//!         _meta: &EventMeta,
//!         tx: &mut sqlx::AnyConnection,
//!     ) -> Result<(), HandlerError> {
//!         sqlx::query("INSERT INTO beans (user_id, beans) VALUES ($1, 58) \
//!                      ON CONFLICT (user_id) DO UPDATE SET beans = beans.beans + 58")
//!             .bind(event.user_id)
//!             .execute(&mut *tx)
//!             .await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config: ConsumerConfig = fanout_config::load(Some("rewards.toml".as_ref()))?;
//! let registry = fanout_schema_registry::RegistrySettings::with_urls(&["http://127.0.0.1:8081"]);
//! Consumer::builder(config)
//!     .decoder(RegistryDecoder::from_settings(&registry)?)
//!     .handle(Rewards)
//!     .run(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! * **Group**: the consumer group is the consumer's `name`; partitions are assigned
//!   cooperative-sticky.
//! * **Exactly-once effects**: each event's dedupe mark (`fanout_processed`, keyed by consumer and
//!   `ce_id`) and the handler's writes commit in one transaction of the consumer's store; a
//!   duplicate is acknowledged and counted, never re-applied. Offsets are committed only up to
//!   the lowest unfinished offset of each partition, after the effects committed.
//! * **Order**: per key. A batch takes up to `processing.batch_size` events in offset order per
//!   partition, each key's waiting events together and in order, and applies them in one
//!   transaction: one multi-row dedupe statement and one [`Handler::handle_batch`] call per
//!   handler. If a handler fails, the transaction is rolled back and the batch runs again event
//!   by event, each in its own savepoint, so only the failing events are retried. Distinct keys of
//!   a partition run in parallel up to `processing.key_parallelism` (on PostgreSQL, up to
//!   `store.max_connections` batches at once; SQLite writes one at a time while the next batch
//!   decodes).
//! * **Failures**: see [`HandlerError`]. Transient failures back off in process, then go through
//!   `<topic>.<consumer>.retry` with delay tiers, then to `<topic>.<consumer>.dlq` with the
//!   headers in [`dlq_headers`]. While an event of a key is in the retry path, later events of
//!   that key are held back behind it (durably: in the retry topic and `fanout_parked_keys`).
//!   With [`RetrySettings::scheduler`] on, the first delay is waited out in `fanout-scheduler`:
//!   the event (and the later ones of its key) go to the retry topic through the schedule topic.
//!   Undecodable payloads are dead-lettered at once. A dead letter is read back as a
//!   [`DeadLetter`] and redriven through the consumer's own retry topic with
//!   [`DeadLetter::replay`] (`fanout dlq replay`): deduplicated on `ce_id`, history kept.
//! * **Shutdown**: when the `run` future's `shutdown` completes, fetching pauses, the work under
//!   way finishes (with any events waiting below it, so the final commit covers every applied
//!   event), offsets are committed and the group is left, all within
//!   `processing.shutdown_timeout_ms`; what cannot finish is abandoned uncommitted.
//! * **Health**: `/healthz` answers while the process runs; `/readyz` is 200 only while the
//!   instance owns partitions of its source topics (its retry topic's do not count), its store
//!   answers (on a connection of its own) and its schema registry answers (within 2 s). With
//!   `[http] bearer_token` (or `bearer_token_file`) every other endpoint, `/metrics` and the
//!   service's read API included, needs `Authorization: Bearer <token>` ([`require_bearer`]).
//! * **A topic that does not exist yet**: the consumer logs that it waits for it and starts
//!   consuming within seconds of its creation (metadata is refreshed every 2 s).
//!
//! # Metrics
//!
//! In the default Prometheus registry, served at `/metrics`: `fanout_consumed_total{consumer,
//! topic,outcome}` (ok, duplicate, retried, dead_lettered, parked, failed),
//! `fanout_handler_duration_seconds`, `fanout_end_to_end_latency_seconds`,
//! `fanout_consumer_lag{consumer,topic,partition}`, `fanout_dead_lettered_total`,
//! `fanout_duplicates_total`, `fanout_consumer_in_flight`, `fanout_consumer_fetch_pauses_total` and
//! `fanout_consumer_refetched_total` (both stay 0 while the consumer keeps up: fetching pauses only
//! when it stays full for a second, or when it shuts down) and
//! `fanout_registry_unavailable_total` (events held because the registry did not answer; the
//! warning is logged at most every 10 s, with the count) with the gauge `fanout_registry_outage`
//! (1 while events are held for the registry, 0 once they decode). Every series exists at zero
//! from start-up, so alerts on them can be written before they first count.
#![warn(missing_docs)]

mod batch;
mod bearer;
mod builder;
mod config;
mod dead_letter;
mod dispatch;
mod error;
mod failure;
mod handler;
mod http;
mod kafka;
mod lag;
mod meta;
mod metrics;
mod parked;
mod registry;
mod routing;
mod runner;
mod shutdown;
pub mod sql;
mod store;

/// The runtime's per-event maps (partitions, keys, bindings): foldhash, seeded per process, hashes
/// a topic name several times faster than the standard SipHash and still varies between runs.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

pub use async_trait::async_trait;
/// The axum a service's [`routes`](ConsumerBuilder::routes) are written against. Use this one
/// (or the same major version): a router of another axum major is a different type.
pub use axum;
pub use bearer::{require_bearer, OPEN_PATHS};
pub use builder::{Consumer, ConsumerBuilder};
pub use config::{ConsumerConfig, ProcessingSettings, RetrySettings, StoreSettings};
pub use dead_letter::{DeadLetter, Replay, ReplayError};
pub use error::{ConsumerError, DecodeError, HandlerError};
pub use failure::headers as dlq_headers;
pub use handler::Handler;
pub use meta::EventMeta;
pub use registry::RegistryDecoder;
/// The sqlx a [`Handler`] writes through (`tx` is a [`sqlx::AnyConnection`]). Use this one (or
/// the same major version): another version's `AnyConnection` is a different type, and the
/// compiler then reports "expected `AnyConnection`, found a different `AnyConnection`".
pub use sqlx;
