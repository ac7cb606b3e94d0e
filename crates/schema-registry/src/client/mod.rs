//! The Confluent Schema Registry REST client.

mod cache;
mod http;
mod retry;
#[cfg(test)]
mod tests;

use std::{collections::HashSet, sync::Arc};

use reqwest::Method;

pub(crate) use cache::SingleFlight;
use http::Transport;

use crate::protocol::{
    Compatibility, CompatibilityCheck, Config, ConfigUpdate, RegisteredSchema, SchemaId, SchemaReference,
    SubjectVersion, UnregisteredSchema, Version, COMPATIBILITY_NOT_FOUND,
};
use crate::{RegistryError, RegistrySettings};

type SubjectSchema = (String, UnregisteredSchema);

/// A client for any Confluent-compatible schema registry (Confluent, Karapace, Apicurio's
/// compatibility API, Fanout's built-in one).
///
/// Cheap to clone; clones share caches and connections. Schemas by id, ids by (subject,
/// schema) and numbered subject versions are cached for the life of the client, so once warm
/// those calls make no HTTP request; concurrent misses of one key share a single request; a
/// "not found" answer is remembered for `not_found_ttl_ms`; transient failures are not
/// remembered.
///
/// ```no_run
/// use fanout_schema_registry::{RegistrySettings, SchemaRegistryClient, UnregisteredSchema};
///
/// # async fn example() -> Result<(), fanout_schema_registry::RegistryError> {
/// let client = SchemaRegistryClient::new(RegistrySettings::with_urls(&["http://127.0.0.1:8081"]))?;
/// let id = client.register("orders-value", &UnregisteredSchema::avro(r#""string""#)).await?;
/// assert_eq!(client.schema_by_id(id).await?.schema, r#""string""#);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SchemaRegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Transport,
    by_id: SingleFlight<u32, Arc<RegisteredSchema>>,
    registered: SingleFlight<SubjectSchema, u32>,
    lookups: SingleFlight<SubjectSchema, Arc<SubjectVersion>>,
    versions: SingleFlight<(String, i32), Arc<SubjectVersion>>,
}

impl std::fmt::Debug for SchemaRegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistryClient")
            .field("urls", &self.inner.http.base_urls())
            .field("http_requests", &self.http_requests())
            .finish_non_exhaustive()
    }
}

impl SchemaRegistryClient {
    /// A client for `settings`; fails on an empty URL list, a malformed URL or an unreadable CA
    /// certificate. Makes no request.
    pub fn new(settings: RegistrySettings) -> Result<Self, RegistryError> {
        let ttl = settings.not_found_ttl();
        Ok(Self {
            inner: Arc::new(Inner {
                http: Transport::new(&settings)?,
                by_id: SingleFlight::new(ttl),
                registered: SingleFlight::new(ttl),
                lookups: SingleFlight::new(ttl),
                versions: SingleFlight::new(ttl),
            }),
        })
    }

    /// A client with default settings for these base URLs.
    pub fn from_urls<S: AsRef<str>>(urls: &[S]) -> Result<Self, RegistryError> {
        Self::new(RegistrySettings::with_urls(urls))
    }

    /// HTTP requests sent so far, retries included (for metrics and tests).
    pub fn http_requests(&self) -> u64 {
        self.inner.http.requests()
    }

    /// Registers `schema` under `subject` and returns its global id. Idempotent: registering a
    /// schema the subject already has returns its id without adding a version. Cached.
    pub async fn register(&self, subject: &str, schema: &UnregisteredSchema) -> Result<u32, RegistryError> {
        let key = (subject.to_owned(), schema.clone());
        let id = self
            .inner
            .registered
            .get_or_fetch(&key, || async {
                let answer: SchemaId = self
                    .inner
                    .http
                    .send(
                        Method::POST,
                        &["subjects", subject, "versions"],
                        &[("normalize", "false")],
                        Some(schema),
                    )
                    .await?;
                Ok(answer.id)
            })
            .await?;
        if self.inner.by_id.get_ready(&id).is_none() {
            // The registry now maps `id` to this schema, so a consumer in this process can decode
            // what it just produced without asking.
            let known = RegisteredSchema {
                id,
                schema: schema.schema.clone(),
                schema_type: schema.schema_type,
                references: schema.references.clone(),
            };
            self.inner.by_id.insert(id, Arc::new(known));
        }
        Ok(id)
    }

    /// The version of `subject` holding `schema`; 40401 (subject) or 40403 (schema) when
    /// absent. Cached.
    pub async fn lookup(
        &self,
        subject: &str,
        schema: &UnregisteredSchema,
    ) -> Result<Arc<SubjectVersion>, RegistryError> {
        let key = (subject.to_owned(), schema.clone());
        self.inner
            .lookups
            .get_or_fetch(&key, || async {
                let found: SubjectVersion = self
                    .inner
                    .http
                    .send(
                        Method::POST,
                        &["subjects", subject],
                        &[("normalize", "false"), ("deleted", "false")],
                        Some(schema),
                    )
                    .await?;
                Ok(Arc::new(found))
            })
            .await
    }

    /// The schema with global id `id`; 40403 when unknown. Cached.
    pub async fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        self.inner
            .by_id
            .get_or_fetch(&id, || async {
                let mut found: RegisteredSchema = self
                    .inner
                    .http
                    .send::<(), _>(Method::GET, &["schemas", "ids", &id.to_string()], &[], None)
                    .await?;
                found.id = id;
                Ok(Arc::new(found))
            })
            .await
    }

    /// The cached schema for `id`, without any request.
    pub fn cached_schema(&self, id: u32) -> Option<Arc<RegisteredSchema>> {
        self.inner.by_id.get_ready(&id)
    }

    /// One version of `subject`. Numbered versions are cached; `Latest` always asks.
    pub async fn subject_version(
        &self,
        subject: &str,
        version: impl Into<Version>,
    ) -> Result<Arc<SubjectVersion>, RegistryError> {
        let fetch = |v: String| async move {
            let found: SubjectVersion = self
                .inner
                .http
                .send::<(), _>(Method::GET, &["subjects", subject, "versions", &v], &[], None)
                .await?;
            Ok(Arc::new(found))
        };
        match version.into() {
            Version::Latest => fetch("latest".to_owned()).await,
            Version::Number(n) => {
                self.inner.versions.get_or_fetch(&(subject.to_owned(), n), || fetch(n.to_string())).await
            }
        }
    }

    /// The newest live version of `subject`; never cached.
    pub async fn latest(&self, subject: &str) -> Result<Arc<SubjectVersion>, RegistryError> {
        self.subject_version(subject, Version::Latest).await
    }

    /// Every live subject.
    pub async fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.inner.http.send::<(), _>(Method::GET, &["subjects"], &[], None).await
    }

    /// The live version numbers of `subject`.
    pub async fn versions(&self, subject: &str) -> Result<Vec<i32>, RegistryError> {
        self.inner.http.send::<(), _>(Method::GET, &["subjects", subject, "versions"], &[], None).await
    }

    /// Whether `schema` may be registered under `subject`: against one version, or with `None`
    /// against every version the subject's compatibility level concerns.
    pub async fn test_compatibility(
        &self,
        subject: &str,
        version: Option<Version>,
        schema: &UnregisteredSchema,
    ) -> Result<CompatibilityCheck, RegistryError> {
        let version = version.map(|v| v.to_string());
        let mut path = vec!["compatibility", "subjects", subject, "versions"];
        if let Some(v) = &version {
            path.push(v);
        }
        self.inner.http.send(Method::POST, &path, &[("verbose", "true")], Some(schema)).await
    }

    /// The compatibility level: the global one (`None`), or `subject`'s own, which is
    /// `Ok(None)` when the subject has no level of its own.
    pub async fn compatibility(&self, subject: Option<&str>) -> Result<Option<Compatibility>, RegistryError> {
        let path: Vec<&str> = std::iter::once("config").chain(subject).collect();
        match self.inner.http.send::<(), Config>(Method::GET, &path, &[], None).await {
            Ok(answer) => Ok(Some(answer.compatibility_level)),
            Err(e) if subject.is_some() && e.error_code() == Some(COMPATIBILITY_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the global (`None`) or `subject`'s compatibility level; returns the level set.
    pub async fn set_compatibility(
        &self,
        subject: Option<&str>,
        level: Compatibility,
    ) -> Result<Compatibility, RegistryError> {
        let path: Vec<&str> = std::iter::once("config").chain(subject).collect();
        let body = ConfigUpdate { compatibility: level };
        let answer: ConfigUpdate = self.inner.http.send(Method::PUT, &path, &[], Some(&body)).await?;
        Ok(answer.compatibility)
    }

    /// Deletes `subject`: soft (its schemas stay readable by id), or `permanent` (only after a
    /// soft delete). Returns the versions deleted.
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<i32>, RegistryError> {
        let query = [("permanent", if permanent { "true" } else { "false" })];
        let deleted =
            self.inner.http.send::<(), _>(Method::DELETE, &["subjects", subject], &query, None).await;
        self.forget_subject(subject);
        deleted
    }

    /// Deletes one version of `subject`, soft or `permanent`. Returns the version deleted.
    pub async fn delete_version(
        &self,
        subject: &str,
        version: impl Into<Version>,
        permanent: bool,
    ) -> Result<i32, RegistryError> {
        let version = version.into().to_string();
        let query = [("permanent", if permanent { "true" } else { "false" })];
        let path = ["subjects", subject, "versions", &version];
        let deleted = self.inner.http.send::<(), _>(Method::DELETE, &path, &query, None).await;
        self.forget_subject(subject);
        deleted
    }

    /// Every schema `references` needs, transitively, as texts (for `Schema::parse_str_with_list`).
    /// Each referenced subject version is fetched once and cached.
    pub async fn referenced_schemas(
        &self,
        references: &[SchemaReference],
    ) -> Result<Vec<String>, RegistryError> {
        let mut pending: Vec<SchemaReference> = references.to_vec();
        let mut seen = HashSet::new();
        let mut texts = Vec::new();
        while let Some(reference) = pending.pop() {
            if !seen.insert((reference.subject.clone(), reference.version)) {
                continue;
            }
            let version = self.subject_version(&reference.subject, reference.version).await?;
            pending.extend(version.references.iter().cloned());
            texts.push(version.schema.clone());
        }
        Ok(texts)
    }

    fn forget_subject(&self, subject: &str) {
        self.inner.registered.invalidate(|(s, _)| s == subject);
        self.inner.lookups.invalidate(|(s, _)| s == subject);
        self.inner.versions.invalidate(|(s, _)| s == subject);
    }
}
