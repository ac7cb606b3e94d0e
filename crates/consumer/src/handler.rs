//! The handler API a team implements, the decoder the runtime decodes payloads with, and their
//! type-erased pairing the runtime routes records to.

use std::{any::Any, marker::PhantomData, sync::Arc};

use apache_avro::{types::Value, Schema};
use async_trait::async_trait;
use fanout_events::Event;
use sqlx::AnyConnection;

use crate::{DecodeError, EventMeta, HandlerError};

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
/// impl Handler<PostPublished> for Rewards {
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
#[async_trait]
pub trait Handler<E: Event>: Send + Sync + 'static {
    /// Applies `event`. `Err(Transient)` is retried; `Err(Permanent)` dead-letters the event.
    async fn handle(&self, event: E, meta: &EventMeta, tx: &mut AnyConnection) -> Result<(), HandlerError>;
}

/// Turns a payload into an Avro value read with the consumer's schema (`reader`). The runtime
/// turns the value into the event type.
///
/// The schema-registry crate's Confluent wire-format serde is the intended implementation; any
/// other (a test decoder, a different registry) plugs in here.
#[async_trait]
pub trait Decoder: Send + Sync + std::fmt::Debug + 'static {
    /// Decodes `payload`, which was published to `topic`.
    async fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        reader: &'static Schema,
    ) -> Result<Value, DecodeError>;
}

/// A decoded event whose type only its route knows.
pub(crate) type AnyEvent = Box<dyn Any + Send>;

/// One handler with its event type erased, so routes of different types live in one table.
#[async_trait]
pub(crate) trait Route: Send + Sync + 'static {
    /// The event type's `ce_type`, for logs.
    fn event_type(&self) -> &'static str;
    async fn decode(&self, topic: &str, payload: Option<&[u8]>) -> Result<AnyEvent, DecodeError>;
    async fn handle(
        &self,
        event: AnyEvent,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError>;
}

pub(crate) struct Typed<E, H> {
    pub(crate) handler: H,
    pub(crate) decoder: Arc<dyn Decoder>,
    pub(crate) event: PhantomData<fn() -> E>,
}

#[async_trait]
impl<E: Event, H: Handler<E>> Route for Typed<E, H> {
    fn event_type(&self) -> &'static str {
        E::TYPE
    }

    async fn decode(&self, topic: &str, payload: Option<&[u8]>) -> Result<AnyEvent, DecodeError> {
        let payload =
            payload.ok_or_else(|| DecodeError::Malformed("the record has no payload (tombstone)".into()))?;
        let value = self.decoder.decode(topic, payload, E::schema()).await?;
        let event: E = apache_avro::from_value(&value)
            .map_err(|e| DecodeError::Malformed(format!("not a {}: {e}", E::TYPE)))?;
        Ok(Box::new(event))
    }

    async fn handle(
        &self,
        event: AnyEvent,
        meta: &EventMeta,
        tx: &mut AnyConnection,
    ) -> Result<(), HandlerError> {
        // The route decoded this value itself, so the downcast cannot fail; if it ever did, the
        // event is unusable and dead-lettering it is the honest outcome.
        let event = event
            .downcast::<E>()
            .map_err(|_| HandlerError::Permanent(format!("internal: decoded value is not a {}", E::TYPE)))?;
        self.handler.handle(*event, meta, tx).await
    }
}
