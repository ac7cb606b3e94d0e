//! The registry's resources and bodies, as the REST API shapes them.

use serde::{Deserialize, Serialize};

/// The kind of schema. Only Avro is decoded by this crate; the others can be registered and read.
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
}

/// A named type defined in another subject's version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    /// For Avro, the referenced type's full name.
    pub name: String,
    /// The subject holding it.
    pub subject: String,
    /// The version of that subject.
    pub version: i32,
}

/// A schema to register, look up or test.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UnregisteredSchema {
    /// The schema text.
    pub schema: String,
    /// Its kind.
    #[serde(rename = "schemaType", default)]
    pub schema_type: SchemaType,
    /// Named types it uses from other subjects.
    #[serde(default)]
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

/// A schema as stored under an id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredSchema {
    /// The schema id (filled in by the client; the endpoint does not echo it).
    #[serde(default)]
    pub id: u32,
    /// The schema text.
    pub schema: String,
    /// Its kind.
    #[serde(rename = "schemaType", default)]
    pub schema_type: SchemaType,
    /// Named types it uses from other subjects.
    #[serde(default)]
    pub references: Vec<SchemaReference>,
}

/// One version of a subject.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
    #[serde(rename = "schemaType", default)]
    pub schema_type: SchemaType,
    /// Named types it uses from other subjects.
    #[serde(default)]
    pub references: Vec<SchemaReference>,
}

/// Which version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The newest live version.
    Latest,
    /// A version number.
    Number(i32),
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

/// Compatibility levels, as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// New schemas can read data written with the latest one.
    Backward,
    /// ... with every earlier one.
    BackwardTransitive,
    /// The latest schema can read data written with new ones.
    Forward,
    /// ... every earlier one can.
    ForwardTransitive,
    /// Backward and forward against the latest.
    Full,
    /// Backward and forward against every earlier one.
    FullTransitive,
    /// No check.
    None,
}

/// The answer of a compatibility test.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CompatibilityCheck {
    /// Whether the schema may be registered.
    pub is_compatible: bool,
    /// The registry's reasons, when it gives them.
    #[serde(default)]
    pub messages: Vec<String>,
}

/// The content type the registry answers with, and the one to send bodies with.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Every error answer: `{"error_code": N, "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ErrorBody {
    /// Confluent's code, e.g. 40403 (see the constants of this module).
    pub error_code: i32,
    /// The explanation, when the registry gives one.
    pub message: Option<String>,
}

/// The answer of a registration: the schema's global id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct IdAnswer {
    /// The global schema id.
    pub id: u32,
}

/// What `GET /config` answers (`compatibilityLevel`) and `PUT /config` echoes (`compatibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ConfigAnswer {
    /// The level.
    #[serde(alias = "compatibilityLevel")]
    pub compatibility: Compatibility,
}

/// The body of `PUT /config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConfigUpdate {
    /// The level to set.
    pub compatibility: Compatibility,
}
