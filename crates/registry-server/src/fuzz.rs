//! Fuzzing the registry's hostile input: request bodies through the same extractor the routes
//! use, then schema texts through the parsing and validation a registration runs, then the
//! compatibility check. Seeds are the repository's own schemas (`schemas/`), a schema with a
//! reference and the config and mode bodies; `FANOUT_FUZZ_COUNT` sets the number of cases.
//!
//! Properties: nothing panics or overflows the stack, every refusal is an error with a message.

use std::sync::LazyLock;

use axum::body::Body as HttpBody;
use axum::extract::{FromRequest, Request};
use fanout_schema_registry::protocol::{
    Compatibility, ConfigUpdate, Mode, ModeBody, SchemaReference, SchemaType, UnregisteredSchema,
};
use fanout_testkit::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{json, Value};

use crate::api::Body;
use crate::compat;
use crate::error::ApiError;
use crate::record::{LogRecord, SchemaValue};
use crate::schema::{parse_avro, parse_new};
use crate::service::prepare;
use crate::state::State;

const SCHEMAS: [&str; 8] = [
    include_str!("../../../schemas/post_published.avsc"),
    include_str!("../../../schemas/gateway/callback_received.avsc"),
    include_str!("../../../schemas/gateway/callback_timed_out.avsc"),
    include_str!("../../../schemas/flows/run_requested.avsc"),
    include_str!("../../../schemas/flows/task_started.avsc"),
    include_str!("../../../schemas/flows/task_succeeded.avsc"),
    include_str!("../../../schemas/flows/task_failed.avsc"),
    include_str!("../../../schemas/flows/task_late.avsc"),
];

const ADDRESS: &str = r#"{"type":"record","name":"Address","namespace":"x","fields":[
    {"name":"city","type":"string","default":"?"},
    {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["HOME","WORK"],"default":"HOME"}},
    {"name":"zip","type":["null",{"type":"fixed","name":"Zip","size":5}],"default":null}]}"#;

const PERSON: &str = r#"{"type":"record","name":"Person","namespace":"x","fields":[
    {"name":"home","type":"x.Address"},{"name":"work","type":["null","x.Address"],"default":null},
    {"name":"tags","type":{"type":"map","values":{"type":"array","items":"string"}},"default":{}},
    {"name":"score","type":"double","default":1.5},{"name":"id","type":{"type":"string","logicalType":"uuid"}},
    {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
    {"name":"next","type":["null","Person"],"default":null}]}"#;

/// Schema cases by default: each parses and checks compatibility, so fewer fit in a few seconds.
const SCHEMA_CASES: u32 = 1_000;

/// The registry's state: `address` version 1 is [`ADDRESS`], `post` version 1 the first schema.
static STATE: LazyLock<State> = LazyLock::new(|| {
    let mut state = State::default();
    for (offset, (subject, schema)) in [("address", ADDRESS), ("post", SCHEMAS[0])].into_iter().enumerate() {
        let id = offset as u32 + 1;
        let value = SchemaValue {
            id,
            schema: schema.into(),
            schema_type: SchemaType::Avro,
            references: vec![],
            deleted: false,
        };
        state.apply(offset as i64, LogRecord::Schema(subject.into(), 1, Some(value)));
    }
    state.index_pending();
    state
});

fn address_reference() -> Value {
    json!([{"name": "x.Address", "subject": "address", "version": 1}])
}

/// Schema texts: every schema of the repository and one with a reference.
fn schema_seeds() -> Vec<String> {
    SCHEMAS.iter().copied().chain([PERSON, ADDRESS]).map(str::to_owned).collect()
}

/// Request bodies of every shape the routes read.
fn body_seeds() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Value> = SCHEMAS.iter().map(|s| json!({"schema": s})).collect();
    bodies.push(json!({"schema": PERSON, "schemaType": "AVRO", "references": address_reference()}));
    bodies.push(json!({"schema": "\"string\"", "schemaType": null, "references": null}));
    bodies.push(json!({"schema": SCHEMAS[0], "schemaType": "JSON"}));
    bodies.push(json!({"compatibility": "FULL_TRANSITIVE"}));
    bodies.push(json!({"compatibilityLevel": "backward"}));
    bodies.push(json!({"mode": "READONLY"}));
    bodies.into_iter().map(|b| serde_json::to_vec(&b).expect("JSON")).collect()
}

/// Values that replace a node of a valid schema's JSON: other types, edge numbers, nesting.
fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        Just(json!("")),
        Just(json!("record")),
        Just(json!("x.Address")),
        Just(json!("dev.fanout.events.PostPublished")),
        Just(json!("1invalid")),
        Just(json!("null")),
        Just(json!([])),
        Just(json!({})),
        Just(json!(["null", "null"])),
        Just(json!([["int"]])),
        Just(json!({"type": "array", "items": {"type": "map", "values": "Person"}})),
        Just(json!({"type": "fixed", "name": "F", "size": -3})),
        Just(json!({"type": "enum", "name": "E", "symbols": []})),
        Just(json!({"type": "record", "name": "R", "fields": [{"name": "r", "type": "R"}]})),
        Just(json!({"type": "int", "logicalType": "date"})),
        Just(json!({"type": {"type": {"type": "string"}}})),
        "[a-zA-Z0-9_.\u{0}-\u{7f}]{0,12}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
    ]
}

/// Replaces node `n` (depth first, modulo the node count) of `value` with `with`.
fn replace_node(value: &mut Value, n: usize, with: Value) {
    fn count(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(count).sum(),
            Value::Object(map) => map.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(value: &mut Value, n: &mut usize, with: &mut Option<Value>) {
        if *n == 0 {
            if let Some(with) = with.take() {
                *value = with;
            }
            return;
        }
        *n -= 1;
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, n, with)),
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, n, with)),
            _ => {}
        }
    }
    let mut n = n % count(value);
    walk(value, &mut n, &mut Some(with));
}

/// A seed schema with one to four nodes replaced: types changed, values out of range.
fn structurally_mutated() -> impl Strategy<Value = String> {
    let seeds = schema_seeds();
    (0..seeds.len(), prop::collection::vec((any::<usize>(), replacement()), 1..4)).prop_map(
        move |(i, edits)| {
            let mut value: Value = serde_json::from_str(&seeds[i]).expect("seed is JSON");
            for (n, with) in edits {
                replace_node(&mut value, n, with);
            }
            value.to_string()
        },
    )
}

fn assert_refusal(error: &ApiError, input: &[u8]) {
    assert!(
        !error.message.trim().is_empty() && error.status.is_client_error(),
        "refusal without a message, or not a 4xx ({error:?}) for {}",
        String::from_utf8_lossy(input)
    );
}

/// Runs a body through the routes' extractor, as `T`.
fn extract<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let request = Request::builder()
        .method("POST")
        .uri("/subjects/s/versions")
        .body(HttpBody::from(bytes.to_vec()))
        .expect("a request");
    let extracted = futures::executor::block_on(Body::<T>::from_request(request, &()));
    extracted.map(|Body(value)| value)
}

/// What a registration, lookup or compatibility test does with a schema once its body parsed.
fn register_like(request: &UnregisteredSchema, input: &[u8]) {
    match prepare(&STATE, request) {
        Err(error) => assert_refusal(&error, input),
        Ok(prepared) => {
            let existing: Vec<(i32, apache_avro::Schema)> = [ADDRESS, SCHEMAS[0]]
                .iter()
                .enumerate()
                .map(|(v, s)| (v as i32 + 1, parse_avro(s, &[]).expect("seed parses").resolved))
                .collect();
            for level in [Compatibility::Backward, Compatibility::FullTransitive, Compatibility::Forward] {
                for message in compat::check(level, &prepared.parsed.resolved, &existing) {
                    assert!(!message.trim().is_empty(), "empty incompatibility for {request:?}");
                }
            }
        }
    }
}

fn body_case(input: &[u8]) {
    match extract::<UnregisteredSchema>(input) {
        Err(error) => assert_refusal(&error, input),
        Ok(request) => register_like(&request, input),
    }
    match extract::<ConfigUpdate<String>>(input) {
        Err(error) => assert_refusal(&error, input),
        Ok(update) => {
            let _ = Compatibility::parse(&update.compatibility);
        }
    }
    match extract::<ModeBody<String>>(input) {
        Err(error) => assert_refusal(&error, input),
        Ok(update) => {
            let _ = Mode::parse(&update.mode);
        }
    }
}

fn schema_case(text: &str) {
    let request = UnregisteredSchema {
        schema: text.to_owned(),
        schema_type: SchemaType::Avro,
        references: serde_json::from_value::<Vec<SchemaReference>>(address_reference()).expect("reference"),
    };
    register_like(&request, text.as_bytes());
    if let Err(error) = parse_new(text, &[]) {
        assert!(!error.to_string().trim().is_empty(), "empty error for {text}");
        assert_refusal(&ApiError::schema(&error), text.as_bytes());
    }
}

#[test]
fn request_bodies_never_panic_and_every_refusal_says_why() {
    let mut runner = TestRunner::new(fuzz::config(fuzz::DEFAULT_CASES));
    runner
        .run(&fuzz::mutated(body_seeds()), |input| {
            body_case(&input);
            Ok(())
        })
        .unwrap();
}

#[test]
fn schema_texts_mutated_byte_by_byte_never_panic() {
    let mut runner = TestRunner::new(fuzz::config(SCHEMA_CASES));
    runner
        .run(&fuzz::mutated_text(schema_seeds()), |text| {
            schema_case(&text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn schema_texts_with_nodes_replaced_never_panic() {
    let mut runner = TestRunner::new(fuzz::config(SCHEMA_CASES));
    runner
        .run(&structurally_mutated(), |text| {
            schema_case(&text);
            Ok(())
        })
        .unwrap();
}

/// 10,000 levels of every way a schema nests, as a schema and inside a body: refused with a
/// message, on a test thread's ordinary stack.
#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    const DEPTH: usize = 10_000;
    let schemas = [
        fuzz::nested("[", "\"int\"", "]", DEPTH),
        fuzz::nested(r#"{"type":"array","items":"#, "\"int\"", "}", DEPTH),
        fuzz::nested(r#"{"type":"map","values":"#, "\"int\"", "}", DEPTH),
        fuzz::nested(r#"{"type":"#, "\"int\"", "}", DEPTH),
        fuzz::nested(r#"["null","#, "\"int\"", "]", DEPTH),
        fuzz::nested(r#"{"type":"record","name":"R","fields":[{"name":"f","type":"#, "\"int\"", "}]}", DEPTH),
        fuzz::nested(
            r#"{"type":"record","name":"R","fields":[{"name":"f","type":"int","default":"#,
            "1",
            "}]}",
            DEPTH,
        ),
    ];
    for schema in &schemas {
        schema_case(schema);
        body_case(&serde_json::to_vec(&json!({"schema": schema})).expect("JSON"));
        body_case(schema.as_bytes());
    }
    body_case(fuzz::nested("{\"schema\":", "1", "}", DEPTH).as_bytes());
}

#[test]
fn nesting_just_inside_the_json_limit_parses_or_is_refused() {
    // serde_json refuses more than 128 levels; the deepest it lets through must not overflow
    // the validator, apache-avro or the compatibility check either.
    for depth in [60, 63, 64, 100, 126, 127, 128] {
        let schemas = [
            fuzz::nested(r#"{"type":"array","items":"#, "\"int\"", "}", depth),
            fuzz::nested(r#"{"type":"map","values":"#, "\"int\"", "}", depth),
            fuzz::nested(r#"{"type":"#, "\"int\"", "}", depth),
            fuzz::nested(
                r#"{"type":"record","name":"R","fields":[{"name":"f","type":"#,
                "\"int\"",
                "}]}",
                depth / 2,
            ),
            fuzz::nested(
                r#"{"type":"record","name":"R","fields":[{"name":"f","type":"int","default":"#,
                "1",
                "}]}",
                depth / 2,
            ),
        ];
        for schema in &schemas {
            schema_case(schema);
        }
    }
}
