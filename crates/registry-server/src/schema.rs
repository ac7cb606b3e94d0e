//! Parsing Avro schema text into what identity and compatibility checks need.

use std::collections::{HashMap, HashSet};

use apache_avro::schema::{Name, Schema, UnionSchema};

use crate::validate::{validate, InvalidSchema};

/// A schema that parsed, with its references resolved.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    /// Self-contained form: referenced named types are inlined where first used, so two schemas
    /// can be compared without their reference lists.
    pub resolved: Schema,
    /// The identity of the schema text. Unlike the Avro Parsing Canonical Form this keeps defaults,
    /// docs, aliases and custom properties: two schemas differing only in a default are different
    /// schemas with different ids.
    pub normalized: String,
}

/// Why a schema text is not a schema this registry accepts.
#[derive(thiserror::Error)]
pub enum SchemaError {
    /// The text is not JSON.
    #[error("not JSON")]
    NotJson(#[source] serde_json::Error),
    /// Java Avro's parser, and so Confluent's registry, would refuse it.
    #[error(transparent)]
    Invalid(#[from] InvalidSchema),
    /// apache-avro refuses it (or, for a schema stored earlier, a reference does not resolve).
    #[error(transparent)]
    Avro(#[from] apache_avro::Error),
    /// The parsed schema could not be written back as JSON for its identity.
    #[error("cannot write the parsed schema as JSON")]
    Normalize(#[source] serde_json::Error),
}

fanout_core::debug_as_report!(SchemaError);

/// Parses a schema offered for registration, lookup or a compatibility test: it must pass Java
/// Avro's rules (see `validate`) as well as apache-avro's.
pub fn parse_new(text: &str, referenced: &[String]) -> Result<ParsedSchema, SchemaError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(SchemaError::NotJson)?;
    // A referenced text that is not JSON defines nothing; apache-avro reports it below.
    let referenced_values: Vec<serde_json::Value> =
        referenced.iter().filter_map(|text| serde_json::from_str(text).ok()).collect();
    validate(&value, &referenced_values)?;
    parse_avro(text, referenced)
}

/// Parses `text`, resolving named types against `referenced` (the texts of every schema it refers
/// to, directly or not). Only apache-avro's checks: schemas already stored are read with this, so
/// one registered before a rule was added stays readable.
pub fn parse_avro(text: &str, referenced: &[String]) -> Result<ParsedSchema, SchemaError> {
    let (schema, named) = if referenced.is_empty() {
        (Schema::parse_str(text)?, Vec::new())
    } else {
        Schema::parse_str_with_list(text, referenced)?
    };
    let normalized = serde_json::to_string(&schema).map_err(SchemaError::Normalize)?;
    let definitions: HashMap<Name, Schema> =
        named.into_iter().filter_map(|s| s.name().cloned().map(|n| (n, s))).collect();
    let resolved = inline(&schema, &definitions, &mut HashSet::new());
    Ok(ParsedSchema { resolved, normalized })
}

/// Replaces the first use of each referenced named type with its definition, as if the schema had
/// been written self-contained; later uses (and recursion) stay references by name, which is what
/// Avro itself requires.
fn inline(schema: &Schema, definitions: &HashMap<Name, Schema>, seen: &mut HashSet<Name>) -> Schema {
    match schema {
        Schema::Ref { name } => match definitions.get(name) {
            Some(definition) if seen.insert(name.clone()) => inline(definition, definitions, seen),
            _ => schema.clone(),
        },
        Schema::Record(record) => {
            seen.insert(record.name.clone());
            let mut record = record.clone();
            for field in &mut record.fields {
                field.schema = inline(&field.schema, definitions, seen);
            }
            Schema::Record(record)
        }
        Schema::Enum(e) => {
            seen.insert(e.name.clone());
            schema.clone()
        }
        Schema::Fixed(f) => {
            seen.insert(f.name.clone());
            schema.clone()
        }
        Schema::Array(array) => {
            let mut array = array.clone();
            array.items = Box::new(inline(&array.items, definitions, seen));
            Schema::Array(array)
        }
        Schema::Map(map) => {
            let mut map = map.clone();
            map.types = Box::new(inline(&map.types, definitions, seen));
            Schema::Map(map)
        }
        Schema::Union(union) => {
            let variants = union.variants().iter().map(|v| inline(v, definitions, seen)).collect();
            // Inlining cannot create a duplicate variant kind; keep the original if it somehow did.
            UnionSchema::new(variants).map(Schema::Union).unwrap_or_else(|_| schema.clone())
        }
        _ => schema.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keeps_defaults_and_ignores_whitespace() {
        let a = r#"{"type":"record","name":"R","fields":[{"name":"f","type":"int","default":1}]}"#;
        let a_spaced = r#"{ "type": "record", "name": "R",
            "fields": [ { "name": "f", "type": "int", "default": 1 } ] }"#;
        let b = r#"{"type":"record","name":"R","fields":[{"name":"f","type":"int","default":2}]}"#;
        let pa = parse_avro(a, &[]).expect("valid");
        assert_eq!(pa.normalized, parse_avro(a_spaced, &[]).expect("valid").normalized);
        assert_ne!(pa.normalized, parse_avro(b, &[]).expect("valid").normalized);
    }

    #[test]
    fn invalid_text_is_an_error() {
        assert!(parse_avro("{not json", &[]).is_err());
        assert!(parse_avro(r#"{"type":"record","name":"R"}"#, &[]).is_err());
        assert!(parse_avro(r#"{"type":"record","name":"R","fields":[{"name":"x","type":"Missing"}]}"#, &[])
            .is_err());
    }

    #[test]
    fn references_resolve_and_inline() {
        let address = r#"{"type":"record","name":"Address","namespace":"x","fields":[{"name":"city","type":"string"}]}"#;
        let person = r#"{"type":"record","name":"Person","namespace":"x","fields":[
            {"name":"home","type":"x.Address"},{"name":"work","type":"x.Address"}]}"#;
        let parsed = parse_avro(person, &[address.to_owned()]).expect("resolves");
        let Schema::Record(record) = &parsed.resolved else { panic!("record expected") };
        assert!(matches!(record.fields[0].schema, Schema::Record(_)));
        assert!(matches!(record.fields[1].schema, Schema::Ref { .. }));
        assert!(parse_avro(person, &[]).is_err(), "unresolved reference must not parse");
    }
}
