//! The client and serde against the real built-in registry (`fanout-registry-server`), running
//! in process on a fresh state topic of the real broker.

use std::sync::Arc;

use apache_avro::Schema;
use fanout_core::Event;
use fanout_events::{Category, PostPublished};
use fanout_schema_registry::{
    AvroSerde, Compatibility, SchemaReference, SchemaRegistryClient, SchemaSelection, SerdeConfig,
    SerdeError, UnregisteredSchema, Version, SCHEMA_NOT_FOUND, SUBJECT_NOT_FOUND,
};
use fanout_testkit::Registry;
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Fanout's registry in process, on a state topic of its own (deleted when the test ends).
async fn start() -> Result<Registry, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Registry::start(&fanout_testkit::Kafka::connect().await?).await?)
}

fn client_of(registry: &Registry) -> SchemaRegistryClient {
    SchemaRegistryClient::from_urls(&[registry.url()]).expect("valid URL")
}

fn serde(registry: &Registry, schema: SchemaSelection) -> AvroSerde {
    AvroSerde::new(client_of(registry), SerdeConfig { schema, ..SerdeConfig::default() })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PostPublishedV2 {
    post_id: i64,
    user_id: i64,
    category: Category,
    city: String,
    title: String,
    published_at: i64,
    language: Option<String>,
}

fn v2_text() -> String {
    let mut json: serde_json::Value = serde_json::from_str(PostPublished::SCHEMA).expect("valid JSON");
    if let Some(fields) = json["fields"].as_array_mut() {
        fields.push(serde_json::json!({"name": "language", "type": ["null", "string"], "default": null}));
    }
    json.to_string()
}

fn v2_schema() -> &'static Schema {
    static SCHEMA: std::sync::OnceLock<Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(&v2_text()).expect("v2 parses"))
}

fn event() -> PostPublished {
    PostPublished {
        post_id: 9,
        user_id: 3,
        category: Category::Secondhand,
        city: "Lyon".into(),
        title: "Bike".into(),
        published_at: 1_700_000_000_000,
    }
}

#[tokio::test]
async fn client_round_trips_every_endpoint() -> TestResult {
    let registry = start().await?;
    let client = client_of(&registry);
    let subject = "post.published-value";
    let v1 = UnregisteredSchema::avro(PostPublished::SCHEMA);
    let v2 = UnregisteredSchema::avro(v2_text());

    let id1 = client.register(subject, &v1).await?;
    assert_eq!(client.register(subject, &v1).await?, id1);
    let fresh = client_of(&registry);
    assert_eq!(fresh.register(subject, &v1).await?, id1, "registering again adds no version");
    let found = fresh.lookup(subject, &v1).await?;
    assert_eq!((found.id, found.version), (id1, 1));
    assert_eq!(Schema::parse_str(&fresh.schema_by_id(id1).await?.schema)?, *PostPublished::schema());
    assert_eq!(fresh.latest(subject).await?.id, id1);
    assert_eq!(fresh.subject_version(subject, 1).await?.id, id1);
    assert!(fresh.subjects().await?.contains(&subject.to_owned()));

    let unknown = fresh.lookup(subject, &UnregisteredSchema::avro(r#""string""#)).await.unwrap_err();
    assert_eq!(unknown.error_code(), Some(SCHEMA_NOT_FOUND), "{unknown}");
    let no_subject = fresh.latest("nobody-value").await.unwrap_err();
    assert_eq!(no_subject.error_code(), Some(SUBJECT_NOT_FOUND), "{no_subject}");

    assert_eq!(client.compatibility(Some(subject)).await?, None);
    assert_eq!(client.set_compatibility(Some(subject), Compatibility::Full).await?, Compatibility::Full);
    assert_eq!(client.compatibility(Some(subject)).await?, Some(Compatibility::Full));
    assert!(client.compatibility(None).await?.is_some());

    assert!(client.test_compatibility(subject, Some(Version::Latest), &v2).await?.is_compatible);
    assert!(client.test_compatibility(subject, None, &v2).await?.is_compatible);
    let breaking = UnregisteredSchema::avro(
        PostPublished::SCHEMA
            .replace(r#""name": "city", "type": "string""#, r#""name": "city", "type": "int""#),
    );
    assert_ne!(breaking.schema, v1.schema, "the replacement did not apply");
    assert!(!client.test_compatibility(subject, Some(Version::Latest), &breaking).await?.is_compatible);
    let refused = client.register(subject, &breaking).await.unwrap_err();
    assert_eq!(refused.error_code().map(|c| c == 409 || c == 40901), Some(true), "{refused}");

    let id2 = client.register(subject, &v2).await?;
    assert_ne!(id1, id2);
    assert_eq!(client.versions(subject).await?, [1, 2]);
    assert_eq!(client.delete_version(subject, 2, false).await?, 2);
    assert_eq!(client.versions(subject).await?, [1]);
    assert_eq!(
        client_of(&registry).schema_by_id(id2).await?.schema,
        v2.schema,
        "soft-deleted stays readable by id"
    );
    assert_eq!(client.delete_version(subject, 2, true).await?, 2);
    assert_eq!(client.delete_subject(subject, false).await?, [1]);
    assert_eq!(client.delete_subject(subject, true).await?, [1]);
    assert!(!client.subjects().await?.contains(&subject.to_owned()));
    Ok(())
}

#[tokio::test]
async fn v1_and_v2_producers_and_consumers_interoperate() -> TestResult {
    let registry = start().await?;
    let producer = serde(&registry, SchemaSelection::AutoRegister);
    let v1_payload = producer.encoder::<PostPublished>(PostPublished::TOPIC).await?.encode(&event())?;

    let consumer = serde(&registry, SchemaSelection::AutoRegister);
    assert_eq!(consumer.decode::<PostPublished>(&v1_payload).await?, event());
    let as_v2: PostPublishedV2 = consumer.decode_with(&v1_payload, v2_schema()).await?;
    assert_eq!(as_v2.language, None);

    // A v2 producer registers v2; a v1 producer told to use the latest writes v2 too.
    let v2_producer = serde(&registry, SchemaSelection::AutoRegister);
    let v2_encoder = v2_producer.encoder_for::<PostPublishedV2>(PostPublished::TOPIC, &v2_text()).await?;
    let v2_event = PostPublishedV2 { language: Some("fr".into()), ..as_v2 };
    let v2_payload = v2_encoder.encode(&v2_event)?;
    assert_eq!(consumer.decode::<PostPublished>(&v2_payload).await?, event());
    assert_eq!(consumer.decode_with::<PostPublishedV2>(&v2_payload, v2_schema()).await?, v2_event);

    let latest =
        serde(&registry, SchemaSelection::UseLatest).encoder::<PostPublished>(PostPublished::TOPIC).await?;
    assert_eq!(latest.schema_id(), v2_encoder.schema_id());
    let written = latest.encode(&event())?;
    assert_eq!(consumer.decode_with::<PostPublishedV2>(&written, v2_schema()).await?.language, None);

    let pinned = serde(&registry, SchemaSelection::PinnedVersion(1))
        .encoder::<PostPublished>(PostPublished::TOPIC)
        .await?;
    assert_eq!(Some(pinned.schema_id()), fanout_schema_registry::wire::schema_id(&v1_payload));

    let json = consumer.decode_json(&v2_payload).await?;
    assert_eq!(json["language"], "fr");
    Ok(())
}

#[tokio::test]
async fn fifty_concurrent_decodes_of_a_new_id_make_one_request() -> TestResult {
    let registry = start().await?;
    let payload = serde(&registry, SchemaSelection::AutoRegister)
        .encoder::<PostPublished>("orders")
        .await?
        .encode(&event())?;
    let consumer = serde(&registry, SchemaSelection::AutoRegister);
    let payload = Arc::new(payload);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (consumer, payload) = (consumer.clone(), payload.clone());
            tokio::spawn(async move { consumer.decode::<PostPublished>(&payload).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await??, event());
    }
    for _ in 0..1_000 {
        consumer.decode::<PostPublished>(&payload).await?;
        consumer.decode_cached::<PostPublished>(&payload)?;
    }
    assert_eq!(consumer.client().http_requests(), 1, "one GET /schemas/ids/{{id}} in total");
    Ok(())
}

#[tokio::test]
async fn unknown_ids_and_unregistered_schemas_are_typed_errors() -> TestResult {
    let registry = start().await?;
    let serde = serde(&registry, SchemaSelection::Lookup);
    let err = serde.decode::<PostPublished>(&[0, 0, 0, 0x30, 0x39, 2]).await.unwrap_err();
    assert!(matches!(err, SerdeError::UnknownSchemaId(12345)), "{err:?}");
    let err = serde.encoder::<PostPublished>("never-registered").await.unwrap_err();
    assert!(err.to_string().contains("never-registered-value"), "{err}");
    assert!(!err.is_transient());
    Ok(())
}

#[tokio::test]
async fn schemas_with_references_decode() -> TestResult {
    let registry = start().await?;
    let client = client_of(&registry);
    let category = r#"{"type": "enum", "name": "Category", "namespace": "dev.fanout.events", "symbols": ["JOB", "HOUSING", "SECONDHAND", "OTHER"], "default": "OTHER"}"#;
    client.register("category", &UnregisteredSchema::avro(category)).await?;
    let record = r#"{"type": "record", "name": "Tagged", "namespace": "dev.fanout.events", "fields": [
        {"name": "id", "type": "long"}, {"name": "category", "type": "dev.fanout.events.Category"}]}"#;
    let reference =
        SchemaReference { name: "dev.fanout.events.Category".into(), subject: "category".into(), version: 1 };
    let id = client
        .register("tagged-value", &UnregisteredSchema::avro(record).with_references(vec![reference]))
        .await?;

    let (schema, schemata) = Schema::parse_str_with_list(record, [category])?;
    let value = apache_avro::types::Value::Record(vec![
        ("id".into(), apache_avro::types::Value::Long(5)),
        ("category".into(), apache_avro::types::Value::Enum(1, "HOUSING".into())),
    ]);
    let mut payload = vec![0];
    payload.extend(id.to_be_bytes());
    payload.extend(apache_avro::to_avro_datum_schemata(&schema, schemata.iter().collect(), value)?);

    let consumer = AvroSerde::from_settings(&registry.settings())?;
    let json = consumer.decode_json(&payload).await?;
    assert_eq!(json, serde_json::json!({"id": 5, "category": "HOUSING"}));
    Ok(())
}
