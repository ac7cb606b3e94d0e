//! Schemas Java Avro's parser refuses, and so Confluent's registry, are refused here too: 422 with
//! error_code 42201 from every endpoint that takes a schema (register, lookup, compatibility),
//! with a message that names the problem once. One registry (and topic) per test, one subject per
//! shape.

mod common;

use common::{record, start, topic, Client, TestResult};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// The subject's first version: a valid schema, so that a lookup of anything else would answer
/// 40403 and a compatibility test `is_compatible`, were the schema not judged first.
fn v1() -> String {
    record(r#"{"name":"a","type":"string"}"#)
}

/// Each shape: a label (part of its subject), the schema, and words the answer must contain.
fn rejected() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "bare-array",
            record(r#"{"name":"key","type":"array","items":"string"}"#),
            r#"record "fanout.test.R", field "key": "array" is not a defined name"#,
        ),
        (
            "bare-map",
            record(r#"{"name":"m","type":"map","values":"long"}"#),
            r#""map" is not a defined name"#,
        ),
        (
            "bare-enum",
            record(r#"{"name":"e","type":"enum","name2":"E","symbols":["A"]}"#),
            r#""enum" is not"#,
        ),
        ("bare-fixed", record(r#"{"name":"f","type":"fixed","size":4}"#), r#""fixed" is not a defined name"#),
        ("undefined-name", record(r#"{"name":"x","type":"Missing"}"#), r#""Missing" is not a defined name"#),
        (
            "undefined-in-union",
            record(r#"{"name":"x","type":["null","Missing"]}"#),
            r#"union branch 2: "Missing" is not a defined name"#,
        ),
        (
            "forward-reference",
            record(r#"{"name":"a","type":"S"},{"name":"b","type":{"type":"record","name":"S","fields":[]}}"#),
            r#""S" is not a defined name"#,
        ),
        (
            "invalid-record-name",
            r#"{"type":"record","name":"1R","fields":[]}"#.to_owned(),
            r#"name "1R" is invalid: it must start with a letter or _"#,
        ),
        (
            "invalid-namespace",
            r#"{"type":"record","name":"R","namespace":"a..b","fields":[]}"#.to_owned(),
            r#"namespace "a..b" is invalid"#,
        ),
        (
            "invalid-alias",
            r#"{"type":"record","name":"R","aliases":["1x"],"fields":[]}"#.to_owned(),
            r#"alias "1x" is invalid"#,
        ),
        ("invalid-field-name", record(r#"{"name":"a-b","type":"int"}"#), r#"field name "a-b" is invalid"#),
        (
            "duplicate-field",
            record(r#"{"name":"a","type":"int"},{"name":"a","type":"string"}"#),
            r#"field "a" is defined twice"#,
        ),
        (
            "redefined-type",
            record(
                r#"{"name":"a","type":{"type":"fixed","name":"F","size":2}},
                   {"name":"b","type":{"type":"fixed","name":"F","size":2}}"#,
            ),
            r#""fanout.test.F" is defined twice"#,
        ),
        (
            "primitive-name",
            r#"{"type":"record","name":"boolean","fields":[]}"#.to_owned(),
            r#""boolean" is a primitive type"#,
        ),
        (
            "duplicate-symbol",
            r#"{"type":"enum","name":"E","symbols":["A","A"]}"#.to_owned(),
            r#"enum symbol "A" is listed twice"#,
        ),
        (
            "invalid-symbol",
            r#"{"type":"enum","name":"E","symbols":["1A"]}"#.to_owned(),
            r#"enum symbol "1A" is invalid"#,
        ),
        (
            "enum-default-not-a-symbol",
            r#"{"type":"enum","name":"E","symbols":["A"],"default":"B"}"#.to_owned(),
            r#"enum default "B" is not one of the symbols"#,
        ),
        ("fixed-without-size", r#"{"type":"fixed","name":"F"}"#.to_owned(), r#"a fixed needs "size""#),
        (
            "type-object-as-type",
            record(r#"{"name":"a","type":{"type":{"type":"string"}}}"#),
            r#""type" of a type object must be a type name"#,
        ),
        (
            "int-default-out-of-range",
            record(r#"{"name":"a","type":"int","default":3000000000}"#),
            r#"default 3000000000 is not a value of the field's type "int""#,
        ),
        (
            "string-default-null",
            record(r#"{"name":"a","type":"string","default":null}"#),
            r#"default null is not a value of the field's type "string""#,
        ),
        (
            "unknown-order",
            record(r#"{"name":"a","type":"int","order":"sideways"}"#),
            r#""order" must be "ascending", "descending" or "ignore""#,
        ),
        ("nested-union", r#"["null",["int"]]"#.to_owned(), "a union cannot contain a union directly"),
    ]
}

/// Asserts `answer` is 422 / 42201 whose message contains `phrase` and says "Invalid schema" once.
fn assert_invalid(answer: &common::Answer, phrase: &str, what: &str) {
    assert_eq!(
        (answer.status, answer.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42201)),
        "{what}: {answer:?}"
    );
    let message = answer.body["message"].as_str().unwrap_or_default();
    assert!(message.contains(phrase), "{what}: {message:?} does not contain {phrase:?}");
    assert_eq!(message.matches("Invalid schema").count(), 1, "{what}: prefix repeated in {message:?}");
}

/// The answers of the three endpoints (compatibility both against all versions and one).
async fn every_endpoint(
    c: &Client,
    subject: &str,
    schema: &str,
) -> reqwest::Result<Vec<(String, common::Answer)>> {
    let body = json!({"schema": schema, "schemaType": "AVRO"});
    let mut answers = Vec::new();
    for (endpoint, path) in [
        ("register", format!("/subjects/{subject}/versions")),
        ("lookup", format!("/subjects/{subject}")),
        ("compatibility with all", format!("/compatibility/subjects/{subject}/versions")),
        (
            "compatibility with latest",
            format!("/compatibility/subjects/{subject}/versions/latest?verbose=true"),
        ),
    ] {
        answers.push((endpoint.to_owned(), c.post(&path, body.clone()).await?));
    }
    Ok(answers)
}

#[tokio::test]
async fn each_shape_java_avro_refuses_is_42201_on_register_lookup_and_compatibility() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    for (label, schema, phrase) in rejected() {
        let subject = fanout_testkit::unique_name(label);
        c.register(&subject, &v1()).await?;
        for (endpoint, answer) in every_endpoint(&c, &subject, &schema).await? {
            assert_invalid(&answer, phrase, &format!("{label} on {endpoint}"));
        }
        let versions = c.get(&format!("/subjects/{subject}/versions")).await?;
        assert_eq!(versions.body, json!([1]), "{label}: nothing was added to {subject}");
    }
    Ok(())
}

#[tokio::test]
async fn an_invalid_schema_is_42201_even_under_a_subject_that_does_not_exist() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    let subject = fanout_testkit::unique_name("no-such-subject");
    let bare_array = record(r#"{"name":"key","type":"array","items":"string"}"#);
    for (endpoint, answer) in every_endpoint(&c, &subject, &bare_array).await? {
        assert_invalid(&answer, r#""array" is not a defined name"#, &endpoint);
    }
    assert_eq!(c.get("/subjects").await?.body, json!([]), "nothing was registered");
    // A valid schema under the same unknown subject is still "subject not found" on lookup.
    let lookup = c.post(&format!("/subjects/{subject}"), json!({"schema": v1()})).await?;
    assert_eq!(lookup.error_code(), Some(40401), "{lookup:?}");
    Ok(())
}

#[tokio::test]
async fn a_type_from_a_reference_resolves_but_cannot_be_redefined() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    let address_subject = fanout_testkit::unique_name("address");
    let address = r#"{"type":"record","name":"Address","namespace":"fanout.test","fields":[{"name":"city","type":"string"}]}"#;
    c.register(&address_subject, address).await?;
    let references: Value =
        json!([{"name": "fanout.test.Address", "subject": address_subject, "version": 1}]);

    let using = record(r#"{"name":"home","type":"Address"}"#);
    let subject = fanout_testkit::unique_name("person");
    let registered = c
        .post(&format!("/subjects/{subject}/versions"), json!({"schema": using, "references": references}))
        .await?;
    assert_eq!(
        registered.status,
        StatusCode::OK,
        "a referenced name resolves in the enclosing namespace: {registered:?}"
    );

    let redefining = record(&format!(r#"{{"name":"home","type":{address}}}"#));
    let refused = c
        .post(
            &format!("/subjects/{subject}/versions"),
            json!({"schema": redefining, "references": references}),
        )
        .await?;
    assert_invalid(&refused, r#""fanout.test.Address" is defined twice"#, "redefining a referenced type");
    Ok(())
}
