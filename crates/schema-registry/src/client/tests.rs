//! The client's own retry, failover, caching and auth logic, against a tiny fake registry that
//! counts requests and answers what each test scripts.

use std::{
    future::IntoFuture,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{
    extract::Request,
    http::{header, StatusCode},
    response::IntoResponse,
    Router,
};

use super::*;
use crate::{AvroSerde, SerdeConfig, SerdeError};

type Script = dyn Fn(usize, &str) -> (u16, String) + Send + Sync;
/// Each request's "METHOD /path?query" and Authorization header.
type Seen = Arc<Mutex<Vec<(String, Option<String>)>>>;

struct Fake {
    url: String,
    hits: Arc<AtomicUsize>,
    seen: Seen,
}

/// Serves `script(n, "METHOD /path?query")` for the n-th request (from 0).
async fn fake(script: impl Fn(usize, &str) -> (u16, String) + Send + Sync + 'static) -> Fake {
    let script: Arc<Script> = Arc::new(script);
    let hits = Arc::new(AtomicUsize::new(0));
    let seen: Seen = Arc::default();
    let (h, s) = (hits.clone(), seen.clone());
    let app = Router::new().fallback(move |request: Request| {
        let (script, hits, seen) = (script.clone(), h.clone(), s.clone());
        async move {
            let n = hits.fetch_add(1, Ordering::SeqCst);
            let target = format!("{} {}", request.method(), request.uri());
            let auth =
                request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            seen.lock().unwrap().push((target.clone(), auth));
            let (status, body) = script(n, &target);
            // Widen the window in which concurrent callers overlap.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let content_type =
                if body.starts_with('<') { "text/html" } else { "application/vnd.schemaregistry.v1+json" };
            (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, content_type)], body)
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    Fake { url, hits, seen }
}

fn settings(urls: &[&str]) -> RegistrySettings {
    RegistrySettings { retry_backoff_ms: 1, retry_backoff_max_ms: 5, ..RegistrySettings::with_urls(urls) }
}

fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

const STRING_SCHEMA: &str = r#"{"schema":"\"string\""}"#;

#[tokio::test]
async fn retries_5xx_and_429_then_succeeds() {
    let fake = fake(|n, _| match n {
        0 => (503, "<html>maintenance</html>".into()),
        1 => (429, r#"{"error_code":42900,"message":"slow down"}"#.into()),
        _ => (200, STRING_SCHEMA.into()),
    })
    .await;
    let client = SchemaRegistryClient::new(settings(&[&fake.url])).unwrap();
    let schema = client.schema_by_id(5).await.unwrap();
    assert_eq!((schema.id, schema.schema.as_str()), (5, "\"string\""));
    assert_eq!(fake.hits.load(Ordering::SeqCst), 3);
    assert_eq!(client.http_requests(), 3);
}

#[tokio::test]
async fn client_errors_return_at_once_with_the_registry_code() {
    let fake = fake(|_, _| {
        (422, r#"{"error_code":42201,"message":"Invalid schema: unknown type nonsense"}"#.into())
    })
    .await;
    let client = SchemaRegistryClient::new(settings(&[&fake.url])).unwrap();
    let err = client.register("orders-value", &UnregisteredSchema::avro("nonsense")).await.unwrap_err();
    assert_eq!(err.error_code(), Some(42201));
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("unknown type nonsense") && text.contains("/subjects/orders-value/versions"),
        "{text}"
    );
    assert_eq!(fake.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn exhausted_retries_are_transient_and_say_why() {
    let fake = fake(|_, _| (500, r#"{"error_code":50001,"message":"store down"}"#.into())).await;
    let client =
        SchemaRegistryClient::new(RegistrySettings { max_retries: 2, ..settings(&[&fake.url]) }).unwrap();
    let err = client.subjects().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(err, RegistryError::Unavailable { attempts: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("store down"), "{err}");
    assert_eq!(fake.hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_html_answer_is_a_typed_error_naming_it() {
    let fake = fake(|_, _| (200, "<!DOCTYPE html><html><title>Login</title></html>".into())).await;
    let client = SchemaRegistryClient::new(settings(&[&fake.url])).unwrap();
    let err = client.schema_by_id(1).await.unwrap_err();
    assert!(matches!(err, RegistryError::UnexpectedResponse { status: 200, .. }), "{err:?}");
    assert!(err.to_string().contains("<title>Login</title>"), "{err}");
}

#[tokio::test]
async fn fails_over_to_the_next_url_and_stays_there() {
    let good = fake(|_, _| (200, r#"["a-value","b-value"]"#.into())).await;
    let broken = fake(|_, _| (502, "<html>bad gateway</html>".into())).await;
    let dead = dead_url();
    let client = SchemaRegistryClient::new(settings(&[&dead, &broken.url, &good.url])).unwrap();
    assert_eq!(client.subjects().await.unwrap(), ["a-value", "b-value"]);
    assert_eq!((broken.hits.load(Ordering::SeqCst), good.hits.load(Ordering::SeqCst)), (1, 1));
    assert_eq!(client.http_requests(), 3);
    client.subjects().await.unwrap();
    assert_eq!(good.hits.load(Ordering::SeqCst), 2, "the second call went straight to the working URL");
    assert_eq!(client.http_requests(), 4);
}

#[tokio::test]
async fn concurrent_misses_make_one_request_and_warm_hits_none() {
    let fake = fake(|_, _| (200, STRING_SCHEMA.into())).await;
    let client = SchemaRegistryClient::new(settings(&[&fake.url])).unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.schema_by_id(11).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().schema, "\"string\"");
    }
    for _ in 0..100 {
        client.schema_by_id(11).await.unwrap();
    }
    assert_eq!(fake.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn not_found_is_cached_and_maps_to_unknown_schema_id() {
    let fake = fake(|_, _| (404, r#"{"error_code":40403,"message":"Schema 77 not found"}"#.into())).await;
    let serde =
        AvroSerde::new(SchemaRegistryClient::new(settings(&[&fake.url])).unwrap(), SerdeConfig::default());
    for _ in 0..5 {
        let err = serde.decode_json(&[0, 0, 0, 0, 77, 2]).await.unwrap_err();
        assert!(matches!(err, SerdeError::UnknownSchemaId(77)), "{err:?}");
        assert!(!err.is_transient());
    }
    assert_eq!(fake.hits.load(Ordering::SeqCst), 1, "the not-found answer was not cached");
}

#[tokio::test]
async fn garbage_schema_text_from_the_registry_is_a_typed_error() {
    let fake = fake(|_, _| (200, r#"{"schema":"{\"type\": \"recor"}"#.into())).await;
    let serde =
        AvroSerde::new(SchemaRegistryClient::new(settings(&[&fake.url])).unwrap(), SerdeConfig::default());
    let err = serde.decode_json(&[0, 0, 0, 0, 3, 2]).await.unwrap_err();
    assert!(matches!(err, SerdeError::InvalidSchema { .. }), "{err:?}");
    assert!(err.to_string().contains("id 3"), "{err}");
}

#[tokio::test]
async fn an_unreachable_registry_is_transient() {
    let dead = dead_url();
    let serde = AvroSerde::new(
        SchemaRegistryClient::new(RegistrySettings { max_retries: 1, ..settings(&[&dead]) }).unwrap(),
        SerdeConfig::default(),
    );
    let err = serde.decode_json(&[0, 0, 0, 0, 3, 2]).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("schema id 3"), "{err}");
    assert_eq!(serde.client().http_requests(), 2);
}

#[tokio::test]
async fn sends_basic_and_bearer_credentials() {
    let fake = fake(|_, _| (200, "[]".into())).await;
    let basic = RegistrySettings {
        username: Some("svc".into()),
        password: Some(crate::Secret::new("s3cret")),
        ..settings(&[&fake.url])
    };
    SchemaRegistryClient::new(basic).unwrap().subjects().await.unwrap();
    let bearer = RegistrySettings { bearer_token: Some(crate::Secret::new("tok")), ..settings(&[&fake.url]) };
    let client = SchemaRegistryClient::new(bearer).unwrap();
    client.subjects().await.unwrap();
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].1.as_deref(), Some("Basic c3ZjOnMzY3JldA=="));
    assert_eq!(seen[1].1.as_deref(), Some("Bearer tok"));
    assert!(!format!("{client:?}").contains("tok\""), "{client:?}");
}

#[tokio::test]
async fn requests_match_the_confluent_api() {
    let fake = fake(|_, target| {
        let body = match target {
            t if t.starts_with("POST /subjects/a%2Fb-value/versions?normalize=false") => r#"{"id":4}"#,
            t if t.starts_with("POST /subjects/a%2Fb-value?") => {
                r#"{"subject":"a/b-value","id":4,"version":1,"schema":"\"string\""}"#
            }
            "GET /subjects/a%2Fb-value/versions/latest" | "GET /subjects/a%2Fb-value/versions/1" => {
                r#"{"subject":"a/b-value","id":4,"version":1,"schema":"\"string\""}"#
            }
            "GET /subjects/a%2Fb-value/versions" => "[1]",
            "GET /config" => r#"{"compatibilityLevel":"FULL"}"#,
            "GET /config/a%2Fb-value" => return (404, r#"{"error_code":40408,"message":"not set"}"#.into()),
            "PUT /config/a%2Fb-value" => r#"{"compatibility":"NONE"}"#,
            "POST /compatibility/subjects/a%2Fb-value/versions/latest?verbose=true" => {
                r#"{"is_compatible":true}"#
            }
            "DELETE /subjects/a%2Fb-value?permanent=false" => "[1]",
            "DELETE /subjects/a%2Fb-value/versions/1?permanent=true" => "1",
            other => return (404, format!(r#"{{"error_code":404,"message":"unexpected {other}"}}"#)),
        };
        (200, body.to_owned())
    })
    .await;
    let client = SchemaRegistryClient::new(settings(&[&fake.url])).unwrap();
    let s = "a/b-value";
    let schema = UnregisteredSchema::avro("\"string\"");
    assert_eq!(client.register(s, &schema).await.unwrap(), 4);
    assert_eq!(client.register(s, &schema).await.unwrap(), 4);
    assert_eq!(client.schema_by_id(4).await.unwrap().schema, "\"string\"", "registration fills the id cache");
    assert_eq!(client.lookup(s, &schema).await.unwrap().version, 1);
    assert_eq!(client.latest(s).await.unwrap().id, 4);
    assert_eq!(client.subject_version(s, 1).await.unwrap().id, 4);
    assert_eq!(client.versions(s).await.unwrap(), [1]);
    assert_eq!(client.compatibility(None).await.unwrap(), Some(Compatibility::Full));
    assert_eq!(client.compatibility(Some(s)).await.unwrap(), None);
    assert_eq!(client.set_compatibility(Some(s), Compatibility::None).await.unwrap(), Compatibility::None);
    assert!(client.test_compatibility(s, Some(Version::Latest), &schema).await.unwrap().is_compatible);
    assert_eq!(client.delete_subject(s, false).await.unwrap(), [1]);
    assert_eq!(client.delete_version(s, 1, true).await.unwrap(), 1);
    let seen: Vec<String> = fake.seen.lock().unwrap().iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(seen.len(), 11, "{seen:#?}");
}
