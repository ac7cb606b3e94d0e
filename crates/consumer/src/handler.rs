//! The handler API a team implements, and its type-erased pairing with the decoder that the
//! runtime routes records to.

use std::any::Any;

use async_trait::async_trait;
use fanout_core::Event;
use sqlx::AnyConnection;
use tracing::Instrument;

use crate::{DecodeError, EventMeta, HandlerError, RegistryDecoder};

/// Applies one event type. Implement it once per event type a consumer reacts to.
///
/// `tx` is a savepoint inside the consumer's store transaction: whatever the handler writes
/// through it commits together with the event's dedupe mark, or not at all. Use `$1`-style
/// placeholders; they work on SQLite and PostgreSQL alike.
///
/// ```no_run
/// use fanout_consumer::{async_trait, EventMeta, Handler, HandlerError};
/// use fanout_events::PostPublished;
///
/// #[derive(Debug)]
/// struct Rewards;
///
/// #[async_trait]
/// impl Handler for Rewards {
///     type Event = PostPublished;
///
///     async fn handle(
///         &self,
///         event: PostPublished,
///         _meta: &EventMeta,
///         tx: &mut sqlx::AnyConnection,
///     ) -> Result<(), HandlerError> {
///         sqlx::query(
///             "INSERT INTO beans (user_id, beans) VALUES ($1, 58) \
///              ON CONFLICT (user_id) DO UPDATE SET beans = beans.beans + 58",
///         )
///         .bind(event.user_id)
///         .execute(&mut *tx)
///         .await?;
///         Ok(())
///     }
/// }
/// ```
///
/// # Batches
///
/// The runtime hands a handler every new event of a batch (up to `processing.batch_size`, in
/// offset order per partition, so a key's events keep their order) through
/// [`handle_batch`](Handler::handle_batch), whose default calls `handle` once per event, each in a
/// `handle` span that continues the producer's trace. Override it to write a whole batch with a
/// few multi-row statements instead of a few statements per event; that is where a consumer's
/// throughput comes from. If it fails, the runtime rolls the transaction back and calls it again
/// with one event at a time, each in its own savepoint, to find the events that fail: the others
/// still commit, and only the failing ones are retried or dead-lettered. Effects outside `tx` (an
/// HTTP call, a cache) may therefore run more than once and must be idempotent.
///
/// ```no_run
/// use std::collections::BTreeMap;
///
/// use fanout_consumer::{async_trait, EventMeta, Handler, HandlerError};
/// use fanout_events::PostPublished;
///
/// #[derive(Debug)]
/// struct CountPosts;
///
/// #[async_trait]
/// impl Handler for CountPosts {
///     type Event = PostPublished;
///
///     async fn handle(&self, event: PostPublished, meta: &EventMeta, tx: &mut sqlx::AnyConnection)
///         -> Result<(), HandlerError> {
///         self.handle_batch(vec![(event, meta.clone())], tx).await
///     }
///
///     async fn handle_batch(&self, events: Vec<(PostPublished, EventMeta)>, tx: &mut sqlx::AnyConnection)
///         -> Result<(), HandlerError> {
///         // One upsert per user per batch, not one per event.
///         let mut per_user: BTreeMap<i64, i64> = BTreeMap::new();
///         for (event, _) in &events {
///             *per_user.entry(event.user_id).or_default() += 1;
///         }
///         let sql = format!(
///             "INSERT INTO post_counts (user_id, posts) VALUES {} \
///              ON CONFLICT (user_id) DO UPDATE SET posts = post_counts.posts + excluded.posts",
///             fanout_consumer::sql::values(tx, per_user.len(), 2)
///         );
///         let mut query = sqlx::query(&sql);
///         for (user_id, posts) in per_user {
///             query = query.bind(user_id).bind(posts);
///         }
///         query.execute(&mut *tx).await?;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The event type this handler applies; the runtime decodes payloads into it, so
    /// [`ConsumerBuilder::handle`](crate::ConsumerBuilder::handle) needs no type annotation.
    type Event: Event;

    /// Applies `event`. `Err(Transient)` is retried; `Err(Permanent)` dead-letters the event.
    async fn handle(
        &self,
        event: Self::Event,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError>;

    /// Applies a batch of new events, in order (duplicates are already filtered out). `Err`
    /// means some event failed; the runtime then finds which by calling this again with one
    /// event at a time. The default calls [`handle`](Handler::handle) per event.
    async fn handle_batch(
        &self,
        events: Vec<(Self::Event, EventMeta)>,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        for (event, meta) in events {
            let span = meta.span(<Self::Event as Event>::TYPE);
            self.handle(event, &meta, tx).instrument(span).await?;
        }
        Ok(())
    }
}

/// A decoded event whose type only its route knows.
pub(crate) type AnyEvent = Box<dyn Any + Send + Sync>;

/// One handler with its event type erased, so routes of different types live in one table.
#[async_trait]
pub(crate) trait Route: Send + Sync + 'static {
    /// The event type the handler applies (its `ce_type`).
    fn event_type(&self) -> &'static str;
    async fn decode(&self, payload: Option<&[u8]>) -> Result<AnyEvent, DecodeError>;
    async fn handle_batch(
        &self,
        events: Vec<(AnyEvent, EventMeta)>,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError>;
}

pub(crate) struct Typed<H> {
    pub(crate) handler: H,
    pub(crate) decoder: RegistryDecoder,
}

#[async_trait]
impl<H: Handler> Route for Typed<H> {
    fn event_type(&self) -> &'static str {
        H::Event::TYPE
    }

    async fn decode(&self, payload: Option<&[u8]>) -> Result<AnyEvent, DecodeError> {
        let payload =
            payload.ok_or_else(|| DecodeError::Malformed("the record has no payload (tombstone)".into()))?;
        let event: H::Event = self.decoder.decode(payload).await?;
        Ok(Box::new(event))
    }

    async fn handle_batch(
        &self,
        events: Vec<(AnyEvent, EventMeta)>,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        // The route decoded these values itself, so the downcast cannot fail; if it ever did, the
        // event is unusable and dead-lettering it is the honest outcome.
        let mut typed = Vec::with_capacity(events.len());
        for (event, meta) in events {
            let event = event.downcast::<H::Event>().map_err(|_| {
                HandlerError::Permanent(format!("internal: decoded value is not a {}", H::Event::TYPE))
            })?;
            typed.push((*event, meta));
        }
        self.handler.handle_batch(typed, tx).await
    }
}
