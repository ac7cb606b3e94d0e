//! The registry keeps nothing but the topic: a new process on the same topic has every id,
//! version and setting, and continues the id sequence without reuse.

mod common;

use common::{record, start, topic, Client, TestResult};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Everything a client can observe, for comparing two registries.
async fn snapshot(c: &Client) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
    let subjects = c.get("/subjects?deleted=true").await?.body;
    let mut versions = serde_json::Map::new();
    for subject in subjects.as_array().cloned().unwrap_or_default() {
        let subject = subject.as_str().unwrap_or_default().replace('/', "%2F");
        let live = c.get(&format!("/subjects/{subject}/versions")).await?.body;
        let all = c.get(&format!("/subjects/{subject}/versions?deleted=true")).await?.body;
        let mut entries = Vec::new();
        for version in all.as_array().cloned().unwrap_or_default() {
            entries.push(c.get(&format!("/subjects/{subject}/versions/{version}?deleted=true")).await?.body);
        }
        versions.insert(subject, json!({"live": live, "all": all, "entries": entries}));
    }
    Ok(json!({
        "subjects": c.get("/subjects").await?.body,
        "subjects_with_deleted": subjects,
        "versions": versions,
        "config": c.get("/config").await?.body,
        "config_s1": c.get("/config/s1").await?.body,
        "mode_s2": c.get("/mode/s2").await?.body,
    }))
}

#[tokio::test]
async fn restart_keeps_every_id_and_version_and_never_reuses_ids() -> TestResult {
    let topic = topic().await?;
    let first = start(&topic).await?;

    let mut ids = Vec::new();
    for n in 0..3 {
        let fields: String = (0..=n)
            .map(|i| format!(r#"{{"name":"f{i}","type":"int","default":{i}}}"#))
            .collect::<Vec<_>>()
            .join(",");
        ids.push(first.register("s1", &record(&fields)).await?);
    }
    ids.push(first.register("s2", &record(r#"{"name":"x","type":"string"}"#)).await?);
    ids.push(first.register("team%2Fs3", &record(r#"{"name":"f0","type":"int","default":0}"#)).await?);
    assert_eq!(ids[4], ids[0], "shared schema shares its id");
    first.put("/config", json!({"compatibility": "FULL"})).await?;
    first.put("/config/s1", json!({"compatibility": "NONE"})).await?;
    first.put("/mode/s2", json!({"mode": "READONLY"})).await?;
    // Soft-delete one version; permanently delete the newest schema, so its id must still not come
    // back after the restart.
    assert_eq!(first.delete("/subjects/s1/versions/2").await?.status, StatusCode::OK);
    let newest = first.register("gone", &record(r#"{"name":"g","type":"boolean"}"#)).await?;
    first.delete("/subjects/gone").await?;
    assert_eq!(first.delete("/subjects/gone?permanent=true").await?.status, StatusCode::OK);

    let before = snapshot(&first).await?;
    let id_texts: Vec<Value> = {
        let mut texts = Vec::new();
        for id in &ids {
            texts.push(first.get(&format!("/schemas/ids/{id}")).await?.body);
        }
        texts
    };
    first.registry.shutdown().await?;

    let second = start(&topic).await?;
    assert_eq!(snapshot(&second).await?, before);
    for (id, text) in ids.iter().zip(&id_texts) {
        assert_eq!(&second.get(&format!("/schemas/ids/{id}")).await?.body, text, "schema {id}");
    }
    assert_eq!(second.get(&format!("/schemas/ids/{newest}")).await?.error_code(), Some(40403));
    assert_eq!(second.get("/subjects/s1/versions").await?.body, json!([1, 3]));

    // Existing schemas keep their ids; new ones continue after the highest ever handed out.
    assert_eq!(second.register("s1", &record(r#"{"name":"f0","type":"int","default":0}"#)).await?, ids[0]);
    let next = second.register("s4", &record(r#"{"name":"n","type":"double"}"#)).await?;
    assert_eq!(next, newest + 1, "ids continue after the highest ever used, deleted or not");
    second.registry.shutdown().await?;
    Ok(())
}
