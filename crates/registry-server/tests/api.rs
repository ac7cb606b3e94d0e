//! The HTTP API against the real broker, one registry (and topic) per test.

mod common;

use common::{record, start, topic, TestResult};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

fn v1() -> String {
    record(r#"{"name":"a","type":"string"}"#)
}

/// Backward compatible with v1: the new field has a default.
fn v2() -> String {
    record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#)
}

#[tokio::test]
async fn register_lookup_read_by_id_and_versions() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;

    let id1 = c.register("orders-value", &v1()).await?;
    let by_id = c.get(&format!("/schemas/ids/{id1}?subject=orders-value&fetchMaxId=false")).await?;
    assert_eq!(by_id.status, StatusCode::OK);
    assert_eq!(by_id.content_type, CONTENT_TYPE);
    assert_eq!(by_id.body, json!({ "schema": v1() }), "only documented fields, no schemaType for AVRO");

    let lookup = c
        .post(
            "/subjects/orders-value?normalize=False&deleted=False",
            json!({"schema": v1(), "metadata": null}),
        )
        .await?;
    assert_eq!(lookup.status, StatusCode::OK, "{lookup:?}");
    assert_eq!(lookup.body, json!({"subject":"orders-value","id":id1,"version":1,"schema":v1()}));

    let id2 = c.register("orders-value", &v2()).await?;
    assert_ne!(id1, id2);
    assert_eq!(c.get("/subjects/orders-value/versions").await?.body, json!([1, 2]));
    let latest = c.get("/subjects/orders-value/versions/latest").await?;
    assert_eq!(latest.body, json!({"subject":"orders-value","version":2,"id":id2,"schema":v2()}));
    let first = c.get("/subjects/orders-value/versions/1").await?;
    assert_eq!(first.body["id"], json!(id1));
    let raw = c.get("/subjects/orders-value/versions/2/schema").await?;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.text, v2());
    assert_eq!(
        c.get(&format!("/schemas/ids/{id2}/versions")).await?.body,
        json!([{"subject":"orders-value","version":2}])
    );
    assert_eq!(c.get("/subjects").await?.body, json!(["orders-value"]));
    assert_eq!(c.get("/schemas/types").await?.body, json!(["AVRO"]));

    // Errors.
    let unknown_schema =
        c.post("/subjects/orders-value", json!({"schema": record(r#"{"name":"z","type":"int"}"#)})).await?;
    assert_eq!((unknown_schema.status, unknown_schema.error_code()), (StatusCode::NOT_FOUND, Some(40403)));
    let unknown_subject = c.post("/subjects/nope", json!({"schema": v1()})).await?;
    assert_eq!(unknown_subject.error_code(), Some(40401));
    assert_eq!(c.get("/subjects/orders-value/versions/3").await?.error_code(), Some(40402));
    assert_eq!(c.get("/subjects/nope/versions/1").await?.error_code(), Some(40401));
    let bad_version = c.get("/subjects/orders-value/versions/abc").await?;
    assert_eq!(
        (bad_version.status, bad_version.error_code()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some(42202))
    );
    let missing_id = c.get("/schemas/ids/999").await?;
    assert_eq!((missing_id.status, missing_id.error_code()), (StatusCode::NOT_FOUND, Some(40403)));
    assert_eq!(missing_id.content_type, CONTENT_TYPE);
    Ok(())
}

#[tokio::test]
async fn identical_schemas_share_ids_and_add_no_versions() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;

    let id = c.register("a-value", &v1()).await?;
    assert_eq!(c.register("b-value", &v1()).await?, id, "same schema, another subject: same id");
    // Re-registering (even with different whitespace) returns the id and adds no version.
    let spaced = v1().replace(",", ", ").replace(":", ": ");
    assert_eq!(c.register("a-value", &spaced).await?, id);
    assert_eq!(c.get("/subjects/a-value/versions").await?.body, json!([1]));
    assert_eq!(c.get("/subjects/b-value/versions").await?.body, json!([1]));
    let usages = c.get(&format!("/schemas/ids/{id}/versions")).await?;
    assert_eq!(usages.body, json!([{"subject":"a-value","version":1},{"subject":"b-value","version":1}]));

    // A schema differing only in a default is a different schema (no Parsing Canonical Form).
    let with_default = record(r#"{"name":"a","type":"string","default":"x"}"#);
    let other = c.register("a-value", &with_default).await?;
    assert_ne!(other, id);
    assert_eq!(c.get("/subjects/a-value/versions").await?.body, json!([1, 2]));
    Ok(())
}

#[tokio::test]
async fn soft_then_permanent_deletes() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    let id1 = c.register("s", &v1()).await?;
    c.register("s", &v2()).await?;

    let premature = c.delete("/subjects/s?permanent=true").await?;
    assert_eq!((premature.status, premature.error_code()), (StatusCode::NOT_FOUND, Some(40405)));

    let soft = c.delete("/subjects/s").await?;
    assert_eq!((soft.status, soft.body.clone()), (StatusCode::OK, json!([1, 2])));
    assert_eq!(c.get("/subjects/s/versions").await?.error_code(), Some(40401));
    assert_eq!(c.get("/subjects").await?.body, json!([]));
    assert_eq!(c.get("/subjects?deleted=True").await?.body, json!(["s"]));
    assert_eq!(c.get("/subjects/s/versions?deleted=true").await?.body, json!([1, 2]));
    assert_eq!(
        c.get(&format!("/schemas/ids/{id1}")).await?.status,
        StatusCode::OK,
        "soft-deleted stays readable by id"
    );
    let lookup_deleted = c.post("/subjects/s?deleted=true", json!({"schema": v1()})).await?;
    assert_eq!(lookup_deleted.body["version"], json!(1));
    assert_eq!(c.delete("/subjects/s").await?.error_code(), Some(40404));

    let permanent = c.delete("/subjects/s?permanent=True").await?;
    assert_eq!(permanent.body, json!([1, 2]));
    assert_eq!(c.get("/subjects?deleted=true").await?.body, json!([]));
    assert_eq!(c.get(&format!("/schemas/ids/{id1}")).await?.error_code(), Some(40403));
    assert_eq!(c.delete("/subjects/s").await?.error_code(), Some(40401));

    // One version at a time.
    c.register("t", &v1()).await?;
    c.register("t", &v2()).await?;
    assert_eq!(c.delete("/subjects/t/versions/1?permanent=true").await?.error_code(), Some(40407));
    assert_eq!(c.delete("/subjects/t/versions/1").await?.body, json!(1));
    assert_eq!(c.delete("/subjects/t/versions/1").await?.error_code(), Some(40406));
    assert_eq!(c.get("/subjects/t/versions/1").await?.error_code(), Some(40402));
    assert_eq!(c.get("/subjects/t/versions/1?deleted=true").await?.body["version"], json!(1));
    assert_eq!(c.delete("/subjects/t/versions/1?permanent=true").await?.body, json!(1));
    assert_eq!(c.get("/subjects/t/versions?deleted=true").await?.body, json!([2]));
    assert_eq!(c.delete("/subjects/t/versions/7").await?.error_code(), Some(40402));
    // A new registration gets the next version, never a reused one.
    c.register("t", &record(r#"{"name":"a","type":"string"},{"name":"c","type":"int","default":1}"#)).await?;
    assert_eq!(c.get("/subjects/t/versions").await?.body, json!([2, 3]));
    Ok(())
}

#[tokio::test]
async fn compatibility_levels_decide_registration() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    c.register("s", &v1()).await?;

    // BACKWARD (the default): a new field without a default cannot read old data.
    let required = record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#);
    let refused = c.post("/subjects/s/versions", json!({"schema": required})).await?;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::CONFLICT, Some(409)), "{refused:?}");
    let check =
        c.post("/compatibility/subjects/s/versions/latest?verbose=true", json!({"schema": required})).await?;
    assert_eq!(check.body["is_compatible"], json!(false));
    assert!(check.body["messages"].as_array().is_some_and(|m| !m.is_empty()), "{check:?}");
    let quiet = c.post("/compatibility/subjects/s/versions/latest", json!({"schema": v2()})).await?;
    assert_eq!(quiet.body, json!({"is_compatible": true}));
    let empty = c.post("/compatibility/subjects/nobody/versions/latest", json!({"schema": required})).await?;
    assert_eq!(empty.body, json!({"is_compatible": true}));

    // NONE accepts it.
    let put = c.put("/config/s", json!({"compatibility": "NONE"})).await?;
    assert_eq!(put.body, json!({"compatibility": "NONE"}));
    c.register("s", &required).await?;
    assert_eq!(c.get("/subjects/s/versions").await?.body, json!([1, 2]));
    Ok(())
}

#[tokio::test]
async fn full_transitive_checks_every_version_backward_only_the_latest() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    let int_a = record(r#"{"name":"a","type":"int"}"#);
    let long_a = record(r#"{"name":"a","type":"long"}"#);
    // int -> long is a promotion: long reads int data, int cannot read long data.
    let long_a_plus = record(r#"{"name":"a","type":"long"},{"name":"b","type":"string","default":""}"#);
    c.register("s", &int_a).await?;
    c.register("s", &long_a).await?;

    c.put("/config/s", json!({"compatibility": "FULL_TRANSITIVE"})).await?;
    let all =
        c.post("/compatibility/subjects/s/versions?verbose=true", json!({"schema": long_a_plus})).await?;
    assert_eq!(all.body["is_compatible"], json!(false), "v1 (int) cannot read long data: {all:?}");
    let against_v2 = c.post("/compatibility/subjects/s/versions/2", json!({"schema": long_a_plus})).await?;
    assert_eq!(against_v2.body, json!({"is_compatible": true}));
    assert_eq!(
        c.post("/subjects/s/versions", json!({"schema": long_a_plus})).await?.status,
        StatusCode::CONFLICT
    );

    c.put("/config/s", json!({"compatibility": "BACKWARD"})).await?;
    let backward = c.post("/compatibility/subjects/s/versions", json!({"schema": long_a_plus})).await?;
    assert_eq!(backward.body, json!({"is_compatible": true}));
    c.register("s", &long_a_plus).await?;
    assert_eq!(c.get("/subjects/s/versions").await?.body, json!([1, 2, 3]));
    Ok(())
}

#[tokio::test]
async fn config_and_mode_shapes() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;

    assert_eq!(c.get("/config").await?.body, json!({"compatibilityLevel": "BACKWARD"}));
    let put = c.put("/config", json!({"compatibility": "FULL"})).await?;
    assert_eq!((put.status, put.body.clone()), (StatusCode::OK, json!({"compatibility": "FULL"})));
    assert_eq!(put.content_type, CONTENT_TYPE);
    assert_eq!(c.get("/config").await?.body, json!({"compatibilityLevel": "FULL"}));

    let unset = c.get("/config/s").await?;
    assert_eq!((unset.status, unset.error_code()), (StatusCode::NOT_FOUND, Some(40408)));
    assert_eq!(c.get("/config/s?defaultToGlobal=true").await?.body, json!({"compatibilityLevel": "FULL"}));
    assert_eq!(
        c.put("/config/s", json!({"compatibility": "forward_transitive"})).await?.body,
        json!({"compatibility": "FORWARD_TRANSITIVE"})
    );
    assert_eq!(c.get("/config/s").await?.body, json!({"compatibilityLevel": "FORWARD_TRANSITIVE"}));
    assert_eq!(c.delete("/config/s").await?.body, json!({"compatibilityLevel": "FORWARD_TRANSITIVE"}));
    assert_eq!(c.get("/config/s").await?.error_code(), Some(40408));
    let invalid = c.put("/config", json!({"compatibility": "SIDEWAYS"})).await?;
    assert_eq!((invalid.status, invalid.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, Some(42203)));
    assert_eq!(c.delete("/config").await?.body, json!({"compatibilityLevel": "FULL"}));
    assert_eq!(c.get("/config").await?.body, json!({"compatibilityLevel": "BACKWARD"}));

    assert_eq!(c.get("/mode").await?.body, json!({"mode": "READWRITE"}));
    assert_eq!(c.get("/mode/s").await?.error_code(), Some(40409));
    assert_eq!(c.put("/mode/s", json!({"mode": "READONLY"})).await?.body, json!({"mode": "READONLY"}));
    let refused = c.post("/subjects/s/versions", json!({"schema": v1()})).await?;
    assert_eq!((refused.status, refused.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, Some(42205)));
    c.register("other", &v1()).await?;
    assert_eq!(c.delete("/mode/s").await?.body, json!({"mode": "READONLY"}));
    c.register("s", &v1()).await?;
    assert_eq!(c.put("/mode", json!({"mode": "nonsense"})).await?.error_code(), Some(42204));
    Ok(())
}

#[tokio::test]
async fn percent_encoded_subjects() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    let id = c.register("team%2Forders-value", &v1()).await?;
    assert_eq!(c.get("/subjects").await?.body, json!(["team/orders-value"]));
    let latest = c.get("/subjects/team%2Forders-value/versions/latest").await?;
    assert_eq!(latest.body["subject"], json!("team/orders-value"));
    assert_eq!(latest.body["id"], json!(id));
    assert_eq!(
        c.get(&format!("/schemas/ids/{id}/versions")).await?.body,
        json!([{"subject":"team/orders-value","version":1}])
    );
    Ok(())
}

#[tokio::test]
async fn errors_are_always_confluent_json() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;

    let unknown = c.get("/no/such/route").await?;
    assert_eq!((unknown.status, unknown.error_code()), (StatusCode::NOT_FOUND, Some(404)));
    assert_eq!(unknown.content_type, CONTENT_TYPE);
    let wrong_method = c.call(Method::PATCH, "/subjects", None).await?;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.error_code(), Some(405));
    let probe = c.get("/associations/resources/-/orders?resourceType=topic&associationType=value").await?;
    assert_eq!((probe.status, probe.error_code()), (StatusCode::NOT_FOUND, Some(40410)));

    let invalid =
        c.post("/subjects/s/versions", json!({"schema": "{\"type\":\"record\",\"name\":\"R\"}"})).await?;
    assert_eq!((invalid.status, invalid.error_code()), (StatusCode::UNPROCESSABLE_ENTITY, Some(42201)));
    let not_json = c.post("/subjects/s/versions", json!({"schema": "{nope"})).await?;
    assert_eq!(not_json.error_code(), Some(42201));
    let protobuf = c
        .post("/subjects/s/versions", json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"}))
        .await?;
    assert_eq!(protobuf.error_code(), Some(42201));
    let invalid_check = c.post("/compatibility/subjects/s/versions", json!({"schema": "42x"})).await?;
    assert_eq!(invalid_check.error_code(), Some(42201));

    // A body that is not JSON at all, with no content type.
    let garbage = c.raw(c.http(Method::POST, "/subjects/s/versions").body("not json")).await?;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(garbage.error_code(), Some(422));
    assert_eq!(garbage.content_type, CONTENT_TYPE);

    // Odd headers, and fields newer clients send, are accepted.
    let odd = c
        .raw(
            c.http(Method::POST, "/subjects/s/versions")
                .header("Content-Type", "text/plain")
                .header("Accept", "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5")
                .body(json!({"schema": v1(), "metadata": null, "ruleSet": null, "references": null}).to_string()),
        )
        .await?;
    assert_eq!(odd.status, StatusCode::OK, "{odd:?}");
    let get_with_content_type =
        c.raw(c.http(Method::GET, "/subjects").header("Content-Type", "application/json")).await?;
    assert_eq!(get_with_content_type.body, json!(["s"]));
    Ok(())
}

#[tokio::test]
async fn references_are_resolved_stored_and_returned() -> TestResult {
    let topic = topic().await?;
    let c = start(&topic).await?;
    let address = r#"{"type":"record","name":"Address","namespace":"fanout.test","fields":[{"name":"city","type":"string"}]}"#;
    c.register("address", address).await?;
    let person = r#"{"type":"record","name":"Person","namespace":"fanout.test","fields":[{"name":"home","type":"fanout.test.Address"}]}"#;
    let references = json!([{"name":"fanout.test.Address","subject":"address","version":1}]);

    let unresolved = c.post("/subjects/person/versions", json!({"schema": person})).await?;
    assert_eq!(unresolved.error_code(), Some(42201), "a reference that is not declared cannot resolve");
    let registered =
        c.post("/subjects/person/versions", json!({"schema": person, "references": references})).await?;
    assert_eq!(registered.status, StatusCode::OK, "{registered:?}");
    let id = registered.body["id"].clone();
    let by_id = c.get(&format!("/schemas/ids/{id}")).await?;
    assert_eq!(by_id.body, json!({"schema": person, "references": references}));
    let latest = c.get("/subjects/person/versions/latest").await?;
    assert_eq!(latest.body["references"], references);
    let again =
        c.post("/subjects/person/versions", json!({"schema": person, "references": references})).await?;
    assert_eq!(again.body["id"], id);

    // The referenced version cannot go while something uses it.
    assert_eq!(c.delete("/subjects/address/versions/1").await?.error_code(), Some(42206));
    let missing = json!([{"name":"fanout.test.Address","subject":"address","version":9}]);
    let bad = c.post("/subjects/person2/versions", json!({"schema": person, "references": missing})).await?;
    assert_eq!(bad.error_code(), Some(42201));
    Ok(())
}

#[tokio::test]
async fn a_second_instance_sees_writes_by_tailing() -> TestResult {
    let topic = topic().await?;
    let writer = start(&topic).await?;
    let reader = start(&topic).await?;
    let id = writer.register("s", &v1()).await?;
    let seen =
        common::eventually(std::time::Duration::from_secs(20), "the reader to see the write", || async {
            let answer = reader.get("/subjects/s/versions/latest").await.ok()?;
            (answer.status == StatusCode::OK).then_some(answer.body)
        })
        .await?;
    assert_eq!(seen["id"], json!(id));
    let by_id: Value = reader.get(&format!("/schemas/ids/{id}")).await?.body;
    assert_eq!(by_id, json!({"schema": v1()}));
    Ok(())
}
