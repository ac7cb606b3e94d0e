//! Avro serde in the Confluent wire format, with writer schemas from the registry.

mod decode;
mod encoder;
mod hot;
mod schema;

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use apache_avro::{schema_compatibility::SchemaCompatibility, types::Value, Schema};
use fanout_core::Event;
use serde::{de::DeserializeOwned, Serialize};

#[cfg(test)]
mod tests;

pub use encoder::Encoder;
pub use schema::WriterSchema;

use hot::HotWriters;

use crate::{
    client::SingleFlight, protocol::SCHEMA_NOT_FOUND, wire, RegisteredSchema, RegistryError,
    RegistrySettings, SchemaRegistryClient, SchemaSelection, SchemaType, SerdeError, SubjectKind,
    SubjectNameStrategy, UnregisteredSchema, Version,
};

/// How the serde names subjects and picks the schema it writes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SerdeConfig {
    /// Subject name strategy.
    pub subject_strategy: SubjectNameStrategy,
    /// Which registered schema a producer writes with.
    pub schema: SchemaSelection,
    /// Whether encoders write keys or values (values by default).
    pub kind: SubjectKind,
}

impl From<&RegistrySettings> for SerdeConfig {
    fn from(settings: &RegistrySettings) -> Self {
        Self {
            subject_strategy: settings.subject_strategy,
            schema: settings.schema,
            kind: SubjectKind::Value,
        }
    }
}

/// Encodes and decodes Confluent wire-format Avro payloads.
///
/// Decoding takes the writer schema from the registry by the payload's id (fetched once per id,
/// then cached) and the reader schema from the consumer's type, so a consumer built on one
/// version reads events written with another where Avro's resolution rules allow.
///
/// ```no_run
/// use fanout_events::{Category, Event, PostPublished};
/// use fanout_schema_registry::AvroSerde;
///
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let serde = AvroSerde::from_urls(&["http://127.0.0.1:8081"])?;
/// let encoder = serde.encoder::<PostPublished>(PostPublished::TOPIC).await?;
/// let event = PostPublished {
///     post_id: 1,
///     user_id: 2,
///     category: Category::Job,
///     city: "Berlin".into(),
///     title: "Barista".into(),
///     published_at: 0,
/// };
/// let payload = encoder.encode(&event)?;
/// let back: PostPublished = serde.decode(&payload).await?;
/// assert_eq!(back, event);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AvroSerde {
    inner: Arc<Inner>,
}

struct Inner {
    client: SchemaRegistryClient,
    config: SerdeConfig,
    writers: SingleFlight<u32, Arc<WriterSchema>>,
    /// `UseLatest` ids, fixed at first use so every payload of a run carries one id.
    latest: SingleFlight<String, u32>,
    /// The decoder's hot path: writer schemas by (id, reader), with their verdicts ([`hot`]).
    hot: HotWriters,
    /// Bumped when [`AvroSerde::preload`] may have replaced a writer schema, which retires the
    /// [`hot`] slots filled before.
    epoch: AtomicU64,
}

impl std::fmt::Debug for AvroSerde {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroSerde")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl AvroSerde {
    /// A serde over `client`.
    pub fn new(client: SchemaRegistryClient, config: SerdeConfig) -> Self {
        decode::limit_allocations();
        // A not-found writer id is remembered by the client's cache; this layer only keeps
        // successes, so the TTL here is irrelevant.
        let ttl = std::time::Duration::ZERO;
        Self {
            inner: Arc::new(Inner {
                client,
                config,
                writers: SingleFlight::new(ttl),
                latest: SingleFlight::new(ttl),
                hot: HotWriters::default(),
                epoch: AtomicU64::new(0),
            }),
        }
    }

    /// A serde with its own client, configured by `settings`.
    pub fn from_settings(settings: &RegistrySettings) -> Result<Self, RegistryError> {
        Ok(Self::new(SchemaRegistryClient::new(settings.clone())?, SerdeConfig::from(settings)))
    }

    /// A serde with default settings for these registry URLs.
    pub fn from_urls<S: AsRef<str>>(urls: &[S]) -> Result<Self, RegistryError> {
        Self::from_settings(&RegistrySettings::with_urls(urls))
    }

    /// The registry client.
    pub fn client(&self) -> &SchemaRegistryClient {
        &self.inner.client
    }

    /// The configuration.
    pub fn config(&self) -> &SerdeConfig {
        &self.inner.config
    }

    /// An encoder for event type `T` on `topic`, its schema id resolved now per the
    /// configured [`SchemaSelection`].
    pub async fn encoder<T: Event>(&self, topic: &str) -> Result<Encoder<T>, SerdeError> {
        self.encoder_for(topic, T::SCHEMA).await
    }

    /// An encoder for any serde type `T` whose Avro schema is `schema_text`.
    pub async fn encoder_for<T: Serialize>(
        &self,
        topic: &str,
        schema_text: &str,
    ) -> Result<Encoder<T>, SerdeError> {
        let local = WriterSchema::local(schema_text)?;
        let (subject, id) = self.resolve_id(topic, schema_text, &local).await?;
        let writer = self.writer_schema(id).await?;
        let direct = writer.canonical_form() == local.canonical_form();
        if !direct {
            // Values are shaped by the application's schema; the registered one must be able to
            // take them (by resolution, which fills defaults), or every encode would fail.
            SchemaCompatibility::can_read(local.schema(), writer.schema()).map_err(|e| {
                SerdeError::IncompatibleSchema { subject: subject.clone(), id, reason: e.to_string() }
            })?;
        }
        Ok(Encoder::new(id, subject, writer, direct))
    }

    /// The id payloads of `schema_text` on `topic` carry, per the configured selection. Cached.
    pub async fn schema_id_for(&self, topic: &str, schema_text: &str) -> Result<u32, SerdeError> {
        let local = WriterSchema::local(schema_text)?;
        Ok(self.resolve_id(topic, schema_text, &local).await?.1)
    }

    async fn resolve_id(
        &self,
        topic: &str,
        text: &str,
        local: &WriterSchema,
    ) -> Result<(String, u32), SerdeError> {
        let config = &self.inner.config;
        let subject =
            config.subject_strategy.subject_for_schema(topic, config.kind, local.schema()).map_err(|e| {
                SerdeError::InvalidSchema { what: format!("for topic {topic}"), reason: e.to_string() }
            })?;
        let client = &self.inner.client;
        let context = |what: &str| format!("{what} under subject {subject}");
        let id = match config.schema {
            SchemaSelection::AutoRegister => client
                .register(&subject, &UnregisteredSchema::avro(text))
                .await
                .map_err(|source| SerdeError::Registry {
                    context: context("registering the schema"),
                    source: Box::new(source),
                })?,
            SchemaSelection::Lookup => {
                client
                    .lookup(&subject, &UnregisteredSchema::avro(text))
                    .await
                    .map_err(|source| SerdeError::Registry {
                        context: context("looking the schema up"),
                        source: Box::new(source),
                    })?
                    .id
            }
            SchemaSelection::UseLatest => self
                .inner
                .latest
                .get_or_fetch(&subject, || async { Ok(client.latest(&subject).await?.id) })
                .await
                .map_err(|source| SerdeError::Registry {
                    context: context("fetching the latest version"),
                    source: Box::new(source),
                })?,
            SchemaSelection::PinnedVersion(v) => {
                client
                    .subject_version(&subject, Version::Number(v))
                    .await
                    .map_err(|source| SerdeError::Registry {
                        context: context(&format!("fetching version {v}")),
                        source: Box::new(source),
                    })?
                    .id
            }
            SchemaSelection::PinnedId(id) => id,
        };
        Ok((subject, id))
    }

    /// The parsed writer schema for `id`, fetched (with its references) and parsed once.
    pub async fn writer_schema(&self, id: u32) -> Result<Arc<WriterSchema>, SerdeError> {
        if let Some(writer) = self.inner.writers.get_ready(&id) {
            return Ok(writer);
        }
        let fetched = self
            .inner
            .writers
            .get_or_fetch(&id, || async {
                let client = &self.inner.client;
                let registered = client.schema_by_id(id).await?;
                let referenced = client.referenced_schemas(&registered.references).await?;
                WriterSchema::parse(&registered, &referenced).map(Arc::new).map_err(|e| match e {
                    SerdeError::InvalidSchema { what, reason } => {
                        RegistryError::InvalidSchema { what, reason }
                    }
                    other => {
                        RegistryError::InvalidSchema { what: format!("id {id}"), reason: other.to_string() }
                    }
                })
            })
            .await;
        fetched.map_err(|source| match source {
            RegistryError::Api { status: 404, error_code: SCHEMA_NOT_FOUND, .. } => {
                SerdeError::UnknownSchemaId(id)
            }
            RegistryError::InvalidSchema { what, reason } => SerdeError::InvalidSchema { what, reason },
            source => {
                SerdeError::Registry { context: format!("fetching schema id {id}"), source: Box::new(source) }
            }
        })
    }

    /// Makes `schema_text` known as schema `id` without asking the registry (for schemas shipped
    /// with the application, offline tools and tests). The registry stays the authority: only
    /// preload what it holds under that id.
    pub fn preload(&self, id: u32, schema_text: &str) -> Result<Arc<WriterSchema>, SerdeError> {
        let registered = RegisteredSchema {
            id,
            schema: schema_text.to_owned(),
            schema_type: SchemaType::Avro,
            references: Vec::new(),
        };
        let writer = Arc::new(WriterSchema::parse(&registered, &[])?);
        self.inner.writers.insert(id, writer.clone());
        // Hot slots filled before may hold another schema under this id.
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        Ok(writer)
    }

    /// Decodes a payload into event type `T`, reading it with `T::schema()`. Asks the registry
    /// only for a schema id not seen before.
    // Not an `async fn` itself: one state machine (`decode_with`'s) rather than two nested ones.
    pub fn decode<'a, T: Event>(
        &'a self,
        payload: &'a [u8],
    ) -> impl Future<Output = Result<T, SerdeError>> + Send + 'a {
        self.decode_with(payload, T::schema())
    }

    /// Decodes a payload into `T`, reading it with `reader`.
    pub async fn decode_with<T: DeserializeOwned>(
        &self,
        payload: &[u8],
        reader: &'static Schema,
    ) -> Result<T, SerdeError> {
        let (id, body) = wire::split(payload)?;
        // Read before any fetch: a slot filled under an epoch that a concurrent preload has
        // since ended is never used.
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        if let Some(hot) = self.inner.hot.get(epoch, id, reader) {
            return decode::typed(&hot.writer, body, reader, hot.same_encoding);
        }
        let writer = match self.inner.writers.get_ready(&id) {
            Some(writer) => writer,
            // Boxed, so that the future of the usual, cached case stays a few words instead of
            // carrying the registry fetch's state.
            None => Box::pin(self.writer_schema(id)).await?,
        };
        self.decode_known(epoch, writer, body, reader)
    }

    /// Like [`decode`](Self::decode), synchronously, for a payload whose schema id is already
    /// cached; [`SerdeError::NotCached`] otherwise.
    pub fn decode_cached<T: Event>(&self, payload: &[u8]) -> Result<T, SerdeError> {
        self.decode_cached_with(payload, T::schema())
    }

    /// Like [`decode_with`](Self::decode_with), synchronously, for a payload whose schema id is
    /// already cached; [`SerdeError::NotCached`] otherwise.
    pub fn decode_cached_with<T: DeserializeOwned>(
        &self,
        payload: &[u8],
        reader: &'static Schema,
    ) -> Result<T, SerdeError> {
        let (id, body) = wire::split(payload)?;
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        // The hot path: this id was decoded for this reader before.
        if let Some(hot) = self.inner.hot.get(epoch, id, reader) {
            return decode::typed(&hot.writer, body, reader, hot.same_encoding);
        }
        let writer = self.inner.writers.get_ready(&id).ok_or(SerdeError::NotCached(id))?;
        self.decode_known(epoch, writer, body, reader)
    }

    /// Decodes with a writer schema taken from the shared cache, and gives it a hot slot.
    fn decode_known<T: DeserializeOwned>(
        &self,
        epoch: u64,
        writer: Arc<WriterSchema>,
        body: &[u8],
        reader: &'static Schema,
    ) -> Result<T, SerdeError> {
        let same = writer.same_encoding(reader);
        let decoded = decode::typed(&writer, body, reader, same);
        self.inner.hot.insert(epoch, writer.id(), reader, writer, same);
        decoded
    }

    /// Decodes a payload into an Avro value, resolved to `reader` when given. Returns the
    /// writer schema id too.
    pub async fn decode_value(
        &self,
        payload: &[u8],
        reader: Option<&'static Schema>,
    ) -> Result<(u32, Value), SerdeError> {
        let (id, body) = wire::split(payload)?;
        let writer = self.writer_schema(id).await?;
        let reader = reader.filter(|r| !writer.same_encoding(r));
        Ok((id, decode::generic(&writer, body, reader)?))
    }

    /// Decodes a payload of any schema into JSON (enums as their symbol, unions as the branch's
    /// value), for tools that do not know the type. The schema id is [`wire::schema_id`].
    pub async fn decode_json(&self, payload: &[u8]) -> Result<serde_json::Value, SerdeError> {
        let (id, value) = self.decode_value(payload, None).await?;
        serde_json::Value::try_from(value)
            .map_err(|e| SerdeError::Decode { id, reason: format!("not representable as JSON: {e}") })
    }
}
