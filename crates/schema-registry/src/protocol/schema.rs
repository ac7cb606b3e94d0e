//! Schemas and subject versions, as the requests and answers of the REST API carry them.

use serde::{Deserialize, Deserializer, Serialize};

/// The kind of schema. Only Avro is decoded by this crate (and accepted by Fanout's registry);
/// the others can be registered with other registries and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SchemaType {
    /// Apache Avro (the API's default when `schemaType` is absent).
    #[default]
    #[serde(rename = "AVRO")]
    Avro,
    /// JSON Schema.
    #[serde(rename = "JSON")]
    Json,
    /// Protocol Buffers.
    #[serde(rename = "PROTOBUF")]
    Protobuf,
    /// A type name this crate does not know. Read so that a registry supporting more types (or a
    /// client sending a wrong one) is answered with a reason instead of failing to parse; it
    /// cannot be sent.
    #[serde(other, skip_serializing)]
    Unknown,
}

impl SchemaType {
    /// True for Avro, the type the API leaves out of its answers.
    pub fn is_avro(&self) -> bool {
        *self == SchemaType::Avro
    }
}

/// A named type defined in another subject's version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SchemaReference {
    /// For Avro, the referenced type's full name.
    pub name: String,
    /// The subject holding it.
    pub subject: String,
    /// The version of that subject (`-1` for the latest).
    pub version: i32,
}

/// A schema to register, look up or test: the body of those three requests.
///
/// Reading is lenient the way Confluent's registry is: unknown fields (`metadata`, `ruleSet`,
/// ...) are ignored, and `null` stands for an absent field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnregisteredSchema {
    /// The schema text (empty when the request had none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub schema: String,
    /// Its kind.
    #[serde(rename = "schemaType", default, deserialize_with = "null_as_default")]
    pub schema_type: SchemaType,
    /// Named types it uses from other subjects.
    #[serde(default, deserialize_with = "null_as_default")]
    pub references: Vec<SchemaReference>,
}

impl UnregisteredSchema {
    /// An Avro schema without references.
    pub fn avro(schema: impl Into<String>) -> Self {
        Self { schema: schema.into(), schema_type: SchemaType::Avro, references: Vec::new() }
    }

    /// The same schema, using `references`.
    pub fn with_references(mut self, references: Vec<SchemaReference>) -> Self {
        self.references = references;
        self
    }
}

/// A schema as stored under an id: the answer of `GET /schemas/ids/{id}`.
///
/// Written as Confluent writes it: no `schemaType` for Avro, no `references` when empty, and no
/// `id` (the path has it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredSchema {
    /// The schema id (filled in by the client; the endpoint does not echo it).
    #[serde(default, skip_serializing)]
    pub id: u32,
    /// The schema text.
    pub schema: String,
    /// Its kind.
    #[serde(rename = "schemaType", default, skip_serializing_if = "SchemaType::is_avro")]
    pub schema_type: SchemaType,
    /// Named types it uses from other subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

/// One version of a subject: the answer of `GET /subjects/{s}/versions/{v}` and of a lookup
/// (`POST /subjects/{s}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectVersion {
    /// The subject.
    pub subject: String,
    /// The global schema id.
    pub id: u32,
    /// The version within the subject.
    pub version: i32,
    /// The schema text.
    pub schema: String,
    /// Its kind.
    #[serde(rename = "schemaType", default, skip_serializing_if = "SchemaType::is_avro")]
    pub schema_type: SchemaType,
    /// Named types it uses from other subjects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<SchemaReference>,
}

/// A subject and one of its versions, without the schema: the items of
/// `GET /schemas/ids/{id}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectAndVersion {
    /// The subject.
    pub subject: String,
    /// The version within the subject.
    pub version: i32,
}

/// The answer of a registration: the schema's global id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaId {
    /// The global schema id.
    pub id: u32,
}

/// Which version of a subject a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The newest live version.
    Latest,
    /// A version number.
    Number(i32),
}

impl Version {
    /// Reads a version as it stands in a path: `latest` (any case) or `-1` for the newest, or a
    /// number from 1 to 2^31-1. `None` for anything else (Confluent's error 42202).
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.eq_ignore_ascii_case("latest") {
            return Some(Self::Latest);
        }
        match raw.parse::<i32>() {
            Ok(-1) => Some(Self::Latest),
            Ok(n) if n >= 1 => Some(Self::Number(n)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Number(n) => write!(f, "{n}"),
        }
    }
}

impl From<i32> for Version {
    fn from(n: i32) -> Self {
        Self::Number(n)
    }
}

/// Reads `null` as the field's default, as Confluent's registry does (newer clients send
/// `"references": null`).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_like_confluent() {
        assert_eq!(Version::parse("latest"), Some(Version::Latest));
        assert_eq!(Version::parse("LATEST"), Some(Version::Latest));
        assert_eq!(Version::parse("-1"), Some(Version::Latest));
        assert_eq!(Version::parse("3"), Some(Version::Number(3)));
        for bad in ["0", "-2", "x", "", "99999999999"] {
            assert_eq!(Version::parse(bad), None, "{bad}");
        }
        assert_eq!(Version::parse(&Version::Number(7).to_string()), Some(Version::Number(7)));
    }

    #[test]
    fn requests_read_nulls_and_unknown_types_leniently() {
        let request: UnregisteredSchema = serde_json::from_str(
            r#"{"schema":"\"int\"","schemaType":null,"references":null,"metadata":null}"#,
        )
        .expect("lenient");
        assert_eq!(request, UnregisteredSchema::avro("\"int\""));
        let other: UnregisteredSchema =
            serde_json::from_str(r#"{"schema":"x","schemaType":"XSD"}"#).expect("unknown type is read");
        assert_eq!(other.schema_type, SchemaType::Unknown);
        let empty: UnregisteredSchema = serde_json::from_str("{}").expect("all fields optional");
        assert!(empty.schema.is_empty());
        assert!(serde_json::to_string(&other).is_err(), "an unknown type cannot be sent");
    }

    #[test]
    fn answers_leave_out_avro_and_empty_references_as_confluent_does() {
        let avro = SubjectVersion {
            subject: "s".into(),
            id: 1,
            version: 2,
            schema: "\"int\"".into(),
            schema_type: SchemaType::Avro,
            references: vec![],
        };
        assert_eq!(
            serde_json::to_value(&avro).expect("serialises"),
            serde_json::json!({"subject": "s", "id": 1, "version": 2, "schema": "\"int\""})
        );
        let by_id = RegisteredSchema {
            id: 9,
            schema: "{}".into(),
            schema_type: SchemaType::Json,
            references: vec![SchemaReference { name: "n".into(), subject: "t".into(), version: 1 }],
        };
        assert_eq!(
            serde_json::to_value(&by_id).expect("serialises"),
            serde_json::json!({"schema": "{}", "schemaType": "JSON",
                "references": [{"name": "n", "subject": "t", "version": 1}]})
        );
    }
}
