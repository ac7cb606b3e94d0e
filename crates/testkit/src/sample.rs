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

/// Asserts that an event type and its schema file agree: the Rust type and the file name the
/// same fields in the same order, `sample` fits the schema, and it survives an Avro round trip.
/// Panics, naming the event type, where they do not (for contracts' unit tests).
///
/// ```
/// fanout_testkit::assert_matches_its_schema(fanout_testkit::sample::<fanout_events::PostPublished>()?);
/// # anyhow::Ok(())
/// ```
pub fn assert_matches_its_schema<E: Event + PartialEq + std::fmt::Debug>(sample: E) {
    use apache_avro::{schema::RecordSchema, types::Value as Avro};
    let schema = E::schema();
    let Schema::Record(RecordSchema { fields, .. }) = schema else { panic!("{} is not a record", E::TYPE) };
    let value =
        apache_avro::to_value(&sample).unwrap_or_else(|e| panic!("{} does not serialise: {e}", E::TYPE));
    let Avro::Record(rust_fields) = &value else { panic!("{} is not a record value", E::TYPE) };
    let file: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    let rust: Vec<&str> = rust_fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(file, rust, "{}: the fields of the Rust type and of its schema file", E::TYPE);
    let resolved =
        value.resolve(schema).unwrap_or_else(|e| panic!("{} does not fit its schema: {e}", E::TYPE));
    let bytes = apache_avro::to_avro_datum(schema, resolved).unwrap_or_else(|e| panic!("{}: {e}", E::TYPE));
    let back = apache_avro::from_avro_datum(schema, &mut bytes.as_slice(), None)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", E::TYPE));
    let typed = apache_avro::from_value::<E>(&back).unwrap_or_else(|e| panic!("{}: {e}", E::TYPE));
    assert_eq!(typed, sample, "{} after an Avro round trip", E::TYPE);
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
