//! The serde without a registry: schemas are preloaded and encoders pinned to ids, so nothing
//! here makes an HTTP call.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use apache_avro::{types::Value, Schema};
use fanout_core::Event;
use fanout_events::{Category, PostPublished};
use serde::{Deserialize, Serialize};

use super::*;
use crate::FrameError;

const V1: u32 = 1;
const V2: u32 = 2;
const V3: u32 = 3;
const COMPLEX: u32 = 4;

/// PostPublished plus an optional field with a default: a backward- and forward-compatible change.
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

fn v2_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut json: serde_json::Value = serde_json::from_str(PostPublished::SCHEMA).unwrap();
        json["fields"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"name": "language", "type": ["null", "string"], "default": null}));
        json.to_string()
    })
}

fn v2_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(v2_text()).unwrap())
}

/// A writer that added a category symbol the v1 reader does not know.
fn v3_text() -> String {
    PostPublished::SCHEMA.replace(r#""OTHER"]"#, r#""OTHER", "EVENTS"]"#)
}

const COMPLEX_TEXT: &str = r#"{"type": "record", "name": "Complex", "namespace": "t", "fields": [
    {"name": "b", "type": "bytes"},
    {"name": "arr", "type": {"type": "array", "items": "long"}},
    {"name": "m", "type": {"type": "map", "values": "string"}},
    {"name": "u", "type": ["null", "int", "string", "double"]},
    {"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
    {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "fl", "type": "float"},
    {"name": "flag", "type": "boolean"},
    {"name": "next", "type": ["null", "Complex"]}
]}"#;

fn offline_serde(selection: SchemaSelection) -> AvroSerde {
    // Port 9 (discard) on localhost: nothing answers, and nothing here should ask.
    let settings =
        RegistrySettings { max_retries: 0, ..RegistrySettings::with_urls(&["http://127.0.0.1:9"]) };
    let client = SchemaRegistryClient::new(settings).unwrap();
    let serde = AvroSerde::new(client, SerdeConfig { schema: selection, ..SerdeConfig::default() });
    serde.preload(V1, PostPublished::SCHEMA).unwrap();
    serde.preload(V2, v2_text()).unwrap();
    serde.preload(V3, &v3_text()).unwrap();
    serde.preload(COMPLEX, COMPLEX_TEXT).unwrap();
    serde
}

fn event() -> PostPublished {
    PostPublished {
        post_id: 42,
        user_id: 7,
        category: Category::Housing,
        city: "Zürich".into(),
        title: "Room with a view".into(),
        published_at: 1_764_000_000_000,
    }
}

fn event_v2(language: Option<&str>) -> PostPublishedV2 {
    let e = event();
    PostPublishedV2 {
        post_id: e.post_id,
        user_id: e.user_id,
        category: e.category,
        city: e.city,
        title: e.title,
        published_at: e.published_at,
        language: language.map(str::to_owned),
    }
}

async fn v1_payload(serde: &AvroSerde) -> Vec<u8> {
    let offline = offline_serde(SchemaSelection::PinnedId(V1));
    let encoder = offline.encoder::<PostPublished>("post.published").await.unwrap();
    let _ = serde;
    encoder.encode(&event()).unwrap()
}

#[tokio::test]
async fn round_trip_matches_the_bare_avro_encoding() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let encoder = serde.encoder::<PostPublished>("post.published").await.unwrap();
    assert_eq!(encoder.schema_id(), V1);
    assert_eq!(encoder.subject(), "post.published-value");
    let payload = encoder.encode(&event()).unwrap();
    let bare =
        apache_avro::to_avro_datum(PostPublished::schema(), apache_avro::to_value(event()).unwrap()).unwrap();
    assert_eq!(&payload[..5], &[0, 0, 0, 0, 1]);
    assert_eq!(&payload[5..], &bare[..], "not the bytes apache-avro writes");
    assert_eq!(serde.decode::<PostPublished>(&payload).await.unwrap(), event());
    assert_eq!(serde.decode_cached::<PostPublished>(&payload).unwrap(), event());

    let mut buf = b"prefix".to_vec();
    encoder.encode_into(&event(), &mut buf).unwrap();
    assert_eq!(&buf[6..], &payload[..]);
}

#[tokio::test]
async fn v2_bytes_decode_as_the_v1_type() {
    let serde = offline_serde(SchemaSelection::PinnedId(V2));
    let encoder = serde.encoder_for::<PostPublishedV2>("post.published", v2_text()).await.unwrap();
    let payload = encoder.encode(&event_v2(Some("de"))).unwrap();
    assert_eq!(wire::schema_id(&payload), Some(V2));
    assert_eq!(serde.decode::<PostPublished>(&payload).await.unwrap(), event());
    assert_eq!(serde.decode_cached::<PostPublished>(&payload).unwrap(), event());
}

#[tokio::test]
async fn v1_bytes_decode_into_the_v2_type_with_the_default() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let payload = v1_payload(&serde).await;
    let back: PostPublishedV2 = serde.decode_with(&payload, v2_schema()).await.unwrap();
    assert_eq!(back, event_v2(None));
}

/// One id read by two reader types: each pair keeps its own verdict (direct for the writer's
/// own type, resolution for the other), however the two alternate.
#[tokio::test]
async fn one_writer_read_as_two_types_keeps_a_verdict_per_reader() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let payload = v1_payload(&serde).await;
    for _ in 0..3 {
        assert_eq!(serde.decode::<PostPublished>(&payload).await.unwrap(), event());
        let back: PostPublishedV2 = serde.decode_with(&payload, v2_schema()).await.unwrap();
        assert_eq!(back, event_v2(None));
        assert_eq!(serde.decode_cached::<PostPublished>(&payload).unwrap(), event());
        let back: PostPublishedV2 = serde.decode_cached_with(&payload, v2_schema()).unwrap();
        assert_eq!(back, event_v2(None));
    }
    assert_eq!(serde.inner.hot.len(), 2, "one hot slot per (id, reader)");
}

/// A preload that replaces the schema under an id (which the registry never does, but a test
/// or a tool may) is what later decodes use, not the schema remembered on the hot path.
#[tokio::test]
async fn a_preload_over_an_id_is_used_by_later_decodes() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    const REUSED: u32 = 9;
    serde.preload(REUSED, PostPublished::SCHEMA).unwrap();
    let mut v1 = v1_payload(&serde).await;
    v1[1..5].copy_from_slice(&REUSED.to_be_bytes());
    assert_eq!(serde.decode::<PostPublished>(&v1).await.unwrap(), event());

    serde.preload(REUSED, v2_text()).unwrap();
    let v2_writer = offline_serde(SchemaSelection::PinnedId(V2));
    let encoder = v2_writer.encoder_for::<PostPublishedV2>("post.published", v2_text()).await.unwrap();
    let mut v2 = encoder.encode(&event_v2(Some("fr"))).unwrap();
    v2[1..5].copy_from_slice(&REUSED.to_be_bytes());
    // Read with the v1 schema remembered for this id, the v2 bytes would leave trailing bytes.
    assert_eq!(serde.decode::<PostPublished>(&v2).await.unwrap(), event());
    assert_eq!(serde.decode_cached::<PostPublished>(&v2).unwrap(), event());
    let back: PostPublishedV2 = serde.decode_with(&v2, v2_schema()).await.unwrap();
    assert_eq!(back, event_v2(Some("fr")));
}

/// More (id, reader) pairs than the hot table holds still decode, through the shared cache.
#[tokio::test]
async fn more_writer_ids_than_hot_slots_all_decode() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let v1 = v1_payload(&serde).await;
    let ids: Vec<u32> = (100..100 + 2 * hot::CAPACITY as u32).collect();
    for &id in &ids {
        serde.preload(id, PostPublished::SCHEMA).unwrap();
    }
    for _ in 0..2 {
        for &id in &ids {
            let mut payload = v1.clone();
            payload[1..5].copy_from_slice(&id.to_be_bytes());
            assert_eq!(serde.decode::<PostPublished>(&payload).await.unwrap(), event(), "id {id}");
            assert_eq!(serde.decode_cached::<PostPublished>(&payload).unwrap(), event(), "id {id}");
        }
    }
    assert_eq!(serde.inner.hot.len(), hot::CAPACITY);
}

#[tokio::test]
async fn a_v1_producer_pinned_to_v2_fills_the_default() {
    let serde = offline_serde(SchemaSelection::PinnedId(V2));
    let encoder = serde.encoder::<PostPublished>("post.published").await.unwrap();
    assert!(format!("{encoder:?}").contains("resolve"), "{encoder:?}");
    let payload = encoder.encode(&event()).unwrap();
    let back: PostPublishedV2 = serde.decode_with(&payload, v2_schema()).await.unwrap();
    assert_eq!(back, event_v2(None));
}

#[tokio::test]
async fn a_producer_pinned_to_an_incompatible_schema_fails_at_start() {
    let serde = offline_serde(SchemaSelection::PinnedId(COMPLEX));
    let err = serde.encoder::<PostPublished>("post.published").await.unwrap_err();
    assert!(matches!(err, SerdeError::IncompatibleSchema { id: COMPLEX, .. }), "{err:?}");
}

#[tokio::test]
async fn an_unknown_category_symbol_reads_as_the_enum_default() {
    let serde = offline_serde(SchemaSelection::PinnedId(V3));
    let writer = serde.writer_schema(V3).await.unwrap();
    let mut value = apache_avro::to_value(event()).unwrap();
    if let Value::Record(fields) = &mut value {
        fields[2].1 = Value::Enum(4, "EVENTS".into());
    }
    let mut payload = vec![0, 0, 0, 0, V3 as u8];
    payload.extend(apache_avro::to_avro_datum(writer.schema(), value).unwrap());
    let back: PostPublished = serde.decode(&payload).await.unwrap();
    assert_eq!(back.category, Category::Other);
}

#[tokio::test]
async fn decode_json_and_value_need_no_type() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let payload = v1_payload(&serde).await;
    let json = serde.decode_json(&payload).await.unwrap();
    assert_eq!(json["category"], "HOUSING");
    assert_eq!(json["city"], "Zürich");
    assert_eq!(json["published_at"], 1_764_000_000_000_i64);
    let (id, value) = serde.decode_value(&payload, Some(v2_schema())).await.unwrap();
    assert_eq!(id, V1);
    let Value::Record(fields) = value else { panic!("not a record") };
    assert_eq!(fields.last().unwrap(), &("language".to_owned(), Value::Union(0, Box::new(Value::Null))));
}

#[tokio::test]
async fn bad_inputs_are_typed_errors() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let payload = v1_payload(&serde).await;

    let err = serde.decode::<PostPublished>(b"{\"post_id\":1}").await.unwrap_err();
    assert!(matches!(err, SerdeError::Frame(FrameError::BadMagic { found: b'{' })), "{err:?}");
    let err = serde.decode::<PostPublished>(&[0, 0, 1]).await.unwrap_err();
    assert!(matches!(err, SerdeError::Frame(FrameError::TooShort { len: 3 })), "{err:?}");

    let err = serde.decode_cached::<PostPublished>(&[0, 0, 0, 0x30, 0x39, 2]).unwrap_err();
    assert!(matches!(err, SerdeError::NotCached(12345)), "{err:?}");

    for cut in 5..payload.len() {
        let err = serde.decode::<PostPublished>(&payload[..cut]).await.unwrap_err();
        assert!(matches!(err, SerdeError::Decode { id: V1, .. }), "cut at {cut}: {err:?}");
    }

    // Trailing bytes, on the direct path (v1 reader) and the resolving one (v2 reader).
    let mut long = payload.clone();
    long.extend_from_slice(&[1, 2, 3]);
    let err = serde.decode::<PostPublished>(&long).await.unwrap_err();
    assert!(matches!(err, SerdeError::TrailingBytes { id: V1, trailing: 3 }), "{err:?}");
    let err = serde.decode_with::<PostPublishedV2>(&long, v2_schema()).await.unwrap_err();
    assert!(matches!(err, SerdeError::TrailingBytes { id: V1, trailing: 3 }), "{err:?}");
    let err = serde.decode_json(&long).await.unwrap_err();
    assert!(err.to_string().contains("3 trailing bytes"), "{err}");

    // An enum index past the symbols (post_id 42 = 0x54, user_id 7 = 0x0e, then the category).
    let mut bad_enum = payload.clone();
    assert_eq!(bad_enum[7], 2, "category HOUSING is index 1, zigzag 2");
    bad_enum[7] = 40;
    assert!(serde.decode::<PostPublished>(&bad_enum).await.is_err());
    assert!(serde.decode_json(&bad_enum).await.is_err());
}

#[test]
fn schema_text_that_does_not_parse_is_an_error() {
    let serde = offline_serde(SchemaSelection::AutoRegister);
    for text in ["{\"type\": \"record\"", "{\"type\": \"nonsense\"}", "<html>oops</html>", ""] {
        let err = serde.preload(99, text).unwrap_err();
        assert!(matches!(err, SerdeError::InvalidSchema { .. }), "{text}: {err:?}");
        assert!(err.to_string().contains("id 99"), "{err}");
    }
}

#[tokio::test]
async fn an_application_schema_that_does_not_parse_is_an_error() {
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let err = serde.encoder_for::<PostPublished>("t", "{not json").await.unwrap_err();
    assert!(matches!(err, SerdeError::InvalidSchema { .. }), "{err:?}");
}

#[tokio::test]
async fn encode_errors_leave_the_buffer_alone() {
    #[derive(Serialize)]
    struct Wrong {
        post_id: String,
    }
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let encoder = serde.encoder_for::<Wrong>("t", PostPublished::SCHEMA).await.unwrap();
    let mut out = b"keep".to_vec();
    let err = encoder.encode_into(&Wrong { post_id: "x".into() }, &mut out).unwrap_err();
    assert!(matches!(err, SerdeError::Encode { id: V1, .. }), "{err:?}");
    assert_eq!(out, b"keep");
}

/// xorshift64*: deterministic, dependency-free, good enough to make garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, max: usize, out: &mut Vec<u8>) {
        let len = self.below(max + 1);
        out.extend((0..len).map(|_| self.next() as u8));
    }
}

fn complex_sample() -> Value {
    let inner = Value::Record(vec![
        ("b".into(), Value::Bytes(vec![])),
        ("arr".into(), Value::Array(vec![])),
        ("m".into(), Value::Map(Default::default())),
        ("u".into(), Value::Union(0, Box::new(Value::Null))),
        ("f".into(), Value::Fixed(4, vec![9; 4])),
        ("e".into(), Value::Enum(0, "A".into())),
        ("d".into(), Value::Decimal(apache_avro::Decimal::from(vec![1, 2]))),
        ("id".into(), Value::Uuid(apache_avro::Uuid::nil())),
        ("fl".into(), Value::Float(0.5)),
        ("flag".into(), Value::Boolean(false)),
        ("next".into(), Value::Union(0, Box::new(Value::Null))),
    ]);
    let Value::Record(mut outer) = inner.clone() else { unreachable!() };
    outer[0].1 = Value::Bytes(b"bytes".to_vec());
    outer[1].1 = Value::Array(vec![Value::Long(1), Value::Long(-300)]);
    outer[2].1 = Value::Map([("k".to_owned(), Value::String("v".into()))].into_iter().collect());
    outer[3].1 = Value::Union(2, Box::new(Value::String("s".into())));
    outer[10].1 = Value::Union(1, Box::new(inner));
    Value::Record(outer)
}

/// One million (by default; `FANOUT_FUZZ_COUNT` overrides) random byte strings through every
/// decode path: none may panic or abort, and each must come back as a value or a typed error.
#[test]
fn a_million_random_inputs_never_panic() {
    let count: usize =
        std::env::var("FANOUT_FUZZ_COUNT").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let complex = serde.preload(COMPLEX, COMPLEX_TEXT).unwrap();
    let valid: Vec<Vec<u8>> = runtime.block_on(async {
        let v1 = v1_payload(&serde).await;
        let v2 = serde
            .encoder_for::<PostPublishedV2>("t", v2_text())
            .await
            .unwrap()
            .encode(&event_v2(Some("fr")))
            .unwrap();
        let v2 = [&[0, 0, 0, 0, V2 as u8][..], &v2[5..]].concat();
        let mut c = vec![0, 0, 0, 0, COMPLEX as u8];
        c.extend(apache_avro::to_avro_datum(complex.schema(), complex_sample()).unwrap());
        vec![v1, v2, c]
    });
    for payload in &valid {
        let (id, body) = wire::split(payload).unwrap();
        let writer = serde.inner.writers.get_ready(&id).unwrap();
        decode::generic(&writer, body, None)
            .unwrap_or_else(|e| panic!("valid sample {id} does not decode: {e}"));
    }

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut input = Vec::with_capacity(256);
    let (mut ok, mut errors) = (0usize, 0usize);
    let started = Instant::now();
    for i in 0..count {
        input.clear();
        match i % 3 {
            0 => rng.bytes(64, &mut input),
            1 => {
                let id = [V1, V2, V3, COMPLEX][rng.below(4)];
                wire::write_header(id, &mut input);
                rng.bytes(48, &mut input);
            }
            _ => {
                input.extend_from_slice(&valid[rng.below(valid.len())]);
                for _ in 0..=rng.below(4) {
                    let len = input.len();
                    match rng.below(5) {
                        0 => input[rng.below(len)] ^= 1 << rng.below(8),
                        1 => input[rng.below(len)] = rng.next() as u8,
                        2 => input.truncate(rng.below(len) + 1),
                        3 => rng.bytes(8, &mut input),
                        _ => input.insert(rng.below(len), rng.next() as u8),
                    }
                }
            }
        }
        // Every path: direct (v1 writer and reader) or resolving (v2/v3/complex writer) into v1,
        // resolving into v2, and generic values with no reader.
        let (typed_v2, generic) = match wire::split(&input) {
            Ok((id, body)) => match serde.inner.writers.get_ready(&id) {
                Some(writer) => (
                    decode::typed::<PostPublishedV2>(&writer, body, v2_schema(), false).map(|_| ()),
                    decode::generic(&writer, body, None).map(|_| ()),
                ),
                None => (Err(SerdeError::NotCached(id)), Err(SerdeError::NotCached(id))),
            },
            Err(e) => (Err(e.clone().into()), Err(e.into())),
        };
        let results = [serde.decode_cached::<PostPublished>(&input).map(|_| ()), typed_v2, generic];
        for result in results {
            match result {
                Ok(()) => ok += 1,
                Err(e) => {
                    errors += 1;
                    // Every error renders; a panic in Display would count as a failure too.
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    let elapsed = started.elapsed();
    println!("random inputs: {count} each through 3 decoders (typed v1, typed v2, generic) in {elapsed:.1?} ({ok} ok, {errors} typed errors, 0 panics)");
    assert!(errors > count, "the inputs were not random enough to fail");
    assert!(elapsed < Duration::from_secs(600));
}

/// Found by `make fuzz` (10,000,000 cases; the default million does not reach it): an array's
/// block count near apache-avro's allocation limit (512 MiB, counted in items, not bytes) makes
/// it reserve that many 48-byte values, about 25 GB, and the process aborted. The decoder now
/// sets a 16 Mi limit (`decode::limit_allocations`) before apache-avro decodes anything.
#[test]
fn a_huge_array_block_count_is_an_error_not_an_abort() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let serde = offline_serde(SchemaSelection::PinnedId(V1));
    let _complex = serde.preload(COMPLEX, COMPLEX_TEXT).unwrap();
    let writer = runtime.block_on(async { serde.inner.writers.get_ready(&COMPLEX).unwrap() });
    // The first field, bytes, empty; then the array of longs: one block of 500,000,000 items.
    let mut body = vec![0u8];
    let mut zigzag: u64 = 500_000_000 << 1;
    while zigzag >= 0x80 {
        body.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    body.push(zigzag as u8);
    assert!(decode::generic(&writer, &body, None).is_err());
}
