//! Decoding payloads: Confluent wire-format Avro through the schema registry.

use fanout_core::Event;
use fanout_schema_registry::{AvroSerde, RegistryError, RegistrySettings, SerdeError};

use crate::DecodeError;

/// Decodes Confluent-framed Avro payloads with the writer schema the registry holds for the
/// payload's schema id, resolved to the handler's event schema.
///
/// How failures reach the runtime:
///
/// * no magic byte, a truncated header, bytes that do not match the writer schema, trailing
///   bytes, or a writer schema the handler's schema cannot read: [`DecodeError::Malformed`],
///   dead-lettered at once;
/// * a schema id the registry definitely does not have (Confluent error 40403):
///   [`DecodeError::UnknownSchema`], dead-lettered at once;
/// * anything else the registry does (unreachable, 5xx, 401/403, an HTML page from a proxy):
///   [`DecodeError::Unavailable`], decoded again later and never dead-lettered, because the same
///   bytes decode once the registry (or its configuration) is fixed.
///
/// ```no_run
/// use fanout_consumer::{Consumer, ConsumerConfig, RegistryDecoder};
/// use fanout_schema_registry::RegistrySettings;
///
/// # fn example() -> Result<(), Box<dyn std::error::Error>> {
/// let decoder = RegistryDecoder::from_settings(&RegistrySettings::with_urls(&["http://127.0.0.1:8081"]))?;
/// let builder = Consumer::builder(ConsumerConfig::new("rewards")).decoder(decoder);
/// # let _ = builder; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistryDecoder {
    serde: AvroSerde,
}

impl RegistryDecoder {
    /// A decoder over an existing serde (shares its writer-schema cache).
    pub fn new(serde: AvroSerde) -> Self {
        Self { serde }
    }

    /// A decoder with its own registry client, configured by `settings`.
    pub fn from_settings(settings: &RegistrySettings) -> Result<Self, RegistryError> {
        AvroSerde::from_settings(settings).map(Self::new)
    }

    /// The serde underneath.
    pub fn serde(&self) -> &AvroSerde {
        &self.serde
    }

    /// Decodes a payload straight into `E` (no generic Avro value in between): synchronously
    /// while the writer schema is cached (every payload but the first of each schema id), asking
    /// the registry only when it is not.
    pub(crate) async fn decode<E: Event>(&self, payload: &[u8]) -> Result<E, DecodeError> {
        match self.serde.decode_cached(payload) {
            Err(SerdeError::NotCached(_)) => self.serde.decode(payload).await,
            decoded => decoded,
        }
        .map_err(decode_error)
    }
}

/// Sorts a serde failure into "these bytes can never decode" (poison) and "ask again later".
pub(crate) fn decode_error(error: SerdeError) -> DecodeError {
    match error {
        SerdeError::UnknownSchemaId(id) => DecodeError::UnknownSchema(id),
        // A registry failure is never the payload's fault: an outage, a refused credential or a
        // proxy answering for the registry all clear up, and the same bytes then decode. Only the
        // registry's definite "no such id" (mapped above by the serde) is poison.
        SerdeError::Registry { .. } | SerdeError::NotCached(_) => {
            DecodeError::Unavailable(fanout_core::report(&error))
        }
        // Framing, body, trailing bytes, an unparseable writer schema (ids are immutable, so it
        // stays unparseable) or a writer the reader cannot resolve: no retry will help.
        other => DecodeError::Malformed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::{http::StatusCode, routing::get, Router};
    use fanout_events::{Category, PostPublished};
    use fanout_schema_registry::wire;

    use super::*;

    const OTHER_SCHEMA: &str =
        r#"{"type":"record","name":"Other","fields":[{"name":"flag","type":"boolean"}]}"#;

    fn settings(url: &str) -> RegistrySettings {
        RegistrySettings {
            max_retries: 0,
            request_timeout_ms: 2_000,
            connect_timeout_ms: 500,
            not_found_ttl_ms: 0,
            ..RegistrySettings::with_urls(&[url])
        }
    }

    /// A registry stand-in answering every schema lookup with `status` and a Confluent body.
    async fn registry(status: StatusCode, error_code: i32) -> SocketAddr {
        let app = Router::new().route(
            "/schemas/ids/{id}",
            get(move || async move {
                (
                    status,
                    [("content-type", "application/vnd.schemaregistry.v1+json")],
                    format!(r#"{{"error_code":{error_code},"message":"stand-in"}}"#),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("bound");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn framed(id: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        wire::write_header(id, &mut out);
        out.extend_from_slice(body);
        out
    }

    fn post() -> PostPublished {
        PostPublished {
            post_id: 5,
            user_id: 7,
            category: Category::Housing,
            city: "Lyon".into(),
            title: "Flat".into(),
            published_at: 1,
        }
    }

    fn avro(event: &PostPublished) -> Vec<u8> {
        let value = apache_avro::to_value(event).expect("to value");
        apache_avro::to_avro_datum(PostPublished::schema(), value).expect("encodes")
    }

    /// A decoder whose registry is unreachable, so every answer below comes from preloaded
    /// schemas or from the frame alone.
    fn offline() -> RegistryDecoder {
        RegistryDecoder::from_settings(&settings("http://127.0.0.1:1")).expect("valid settings")
    }

    #[tokio::test]
    async fn a_known_id_decodes_to_the_event() {
        let decoder = offline();
        decoder.serde().preload(3, PostPublished::SCHEMA).expect("preloads");
        let event: PostPublished = decoder.decode(&framed(3, &avro(&post()))).await.expect("decodes");
        assert_eq!(event, post());
    }

    #[tokio::test]
    async fn bad_framing_and_bad_bodies_are_malformed() {
        let decoder = offline();
        decoder.serde().preload(3, PostPublished::SCHEMA).expect("preloads");
        decoder.serde().preload(4, OTHER_SCHEMA).expect("preloads");
        let mut trailing = framed(3, &avro(&post()));
        trailing.push(0);
        for (what, payload) in [
            ("json", b"{\"post_id\":1}".to_vec()),
            ("short header", vec![0, 0, 1]),
            ("empty", Vec::new()),
            ("truncated body", framed(3, &avro(&post())[..4])),
            ("trailing bytes", trailing),
            ("writer the reader cannot resolve", framed(4, &[1])),
        ] {
            let error = decoder.decode::<PostPublished>(&payload).await.expect_err(what);
            assert!(matches!(error, DecodeError::Malformed(_)), "{what}: {error:?}");
            assert!(error.is_poison(), "{what}");
        }
    }

    #[tokio::test]
    async fn an_id_the_registry_does_not_know_is_an_unknown_schema() {
        let addr = registry(StatusCode::NOT_FOUND, fanout_schema_registry::SCHEMA_NOT_FOUND).await;
        let decoder = RegistryDecoder::from_settings(&settings(&format!("http://{addr}"))).expect("valid");
        let error = decoder.decode::<PostPublished>(&framed(99, &[0])).await.expect_err("unknown");
        assert!(matches!(error, DecodeError::UnknownSchema(99)), "{error:?}");
        assert!(error.is_poison());
    }

    #[tokio::test]
    async fn registry_trouble_is_unavailable_never_poison() {
        let unreachable = offline();
        let error = unreachable.decode::<PostPublished>(&framed(1, &[0])).await.expect_err("down");
        assert!(matches!(error, DecodeError::Unavailable(_)), "{error:?}");
        assert!(!error.is_poison());

        for (status, code) in [(StatusCode::INTERNAL_SERVER_ERROR, 50001), (StatusCode::UNAUTHORIZED, 40101)]
        {
            let addr = registry(status, code).await;
            let decoder =
                RegistryDecoder::from_settings(&settings(&format!("http://{addr}"))).expect("valid");
            let error = decoder.decode::<PostPublished>(&framed(1, &[0])).await.expect_err("refused");
            assert!(matches!(error, DecodeError::Unavailable(_)), "{status}: {error:?}");
        }
    }
}
