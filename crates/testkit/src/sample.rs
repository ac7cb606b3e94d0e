//! A valid instance of any event type, made from its Avro schema: what a generated service's
//! test publishes without knowing the event's fields.

use anyhow::Context;
use apache_avro::Schema;
use fanout_core::Event;
use serde_json::{json, Map, Value};

/// An event of type `E` whose every field holds a plain value of its Avro type: numbers 1,
/// strings `"example"`, enums their first symbol, optional fields null, arrays and maps empty.
///
/// ```
/// let post: fanout_events::PostPublished = fanout_testkit::sample()?;
/// assert_eq!(post.city, "example");
/// # anyhow::Ok(())
/// ```
pub fn sample<E: Event>() -> anyhow::Result<E> {
    let value = sample_json::<E>()?;
    serde_json::from_value(value.clone())
        .with_context(|| format!("{} does not accept its schema's sample {value}", E::TYPE))
}

/// [`sample`] as JSON, the way `fanout publish` and an HTTP API take it.
pub fn sample_json<E: Event>() -> anyhow::Result<Value> {
    of(E::schema()).with_context(|| format!("making a sample of {}", E::TYPE))
}

fn of(schema: &Schema) -> anyhow::Result<Value> {
    Ok(match schema {
        Schema::Null => Value::Null,
        Schema::Boolean => json!(false),
        Schema::Int | Schema::Long | Schema::Date | Schema::TimeMillis | Schema::TimeMicros => json!(1),
        Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => json!(1),
        Schema::LocalTimestampMillis | Schema::LocalTimestampMicros | Schema::LocalTimestampNanos => {
            json!(1)
        }
        Schema::Float | Schema::Double => json!(1.0),
        Schema::String => json!("example"),
        Schema::Uuid => json!("00000000-0000-7000-8000-000000000000"),
        Schema::Array(_) => json!([]),
        Schema::Map(_) => json!({}),
        Schema::Enum(e) => json!(e.symbols.first().context("an enum without symbols")?),
        Schema::Union(union) => match union.variants().first() {
            Some(first) => of(first)?,
            None => anyhow::bail!("an empty union"),
        },
        Schema::Record(record) => {
            let mut fields = Map::new();
            for field in &record.fields {
                fields.insert(field.name.clone(), of(&field.schema)?);
            }
            Value::Object(fields)
        }
        other => anyhow::bail!("no sample for the Avro type {other:?}"),
    })
}
