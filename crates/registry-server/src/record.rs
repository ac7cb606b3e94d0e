//! The records kept in the registry's compacted topic.
//!
//! Every key names exactly one piece of state (one subject version, one config, one mode), so the
//! last record per key is the whole truth and log compaction never loses anything that matters.
//! A record without a value (a tombstone) removes that piece of state.

use fanout_schema_registry::protocol::{SchemaReference, SchemaType};
use serde::{Deserialize, Serialize};

/// Which piece of state a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LogKey {
    /// One version of one subject.
    Schema {
        /// The subject.
        subject: String,
        /// The version within the subject.
        version: i32,
    },
    /// A compatibility level, global when `subject` is `None`.
    Config {
        /// The subject, or `None` for the global level.
        subject: Option<String>,
    },
    /// A mode, global when `subject` is `None`.
    Mode {
        /// The subject, or `None` for the global mode.
        subject: Option<String>,
    },
    /// The highest id ever handed out; kept so that permanently deleting the newest schema (and
    /// compaction then dropping its record) can never make an id be handed out twice.
    MaxId,
}

/// The value of a [`LogKey::Schema`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaValue {
    /// The global schema id.
    pub id: u32,
    /// The schema text as first registered.
    pub schema: String,
    /// Avro (the only type supported).
    #[serde(rename = "schemaType", default)]
    pub schema_type: SchemaType,
    /// The schemas this one refers to.
    #[serde(default)]
    pub references: Vec<SchemaReference>,
    /// Soft-deleted versions stay readable by id but are not live in their subject.
    #[serde(default)]
    pub deleted: bool,
}

/// The value of a [`LogKey::Config`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigValue {
    /// The compatibility level name, e.g. `BACKWARD`.
    #[serde(rename = "compatibilityLevel")]
    pub compatibility_level: String,
}

/// The value of a [`LogKey::Mode`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeValue {
    /// The mode name, e.g. `READWRITE`.
    pub mode: String,
}

/// The value of a [`LogKey::MaxId`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxIdValue {
    /// The highest id handed out so far.
    pub id: u32,
}

/// One decoded record: a key and its value, `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    /// A subject version was written or removed.
    Schema(String, i32, Option<SchemaValue>),
    /// A compatibility level was set or removed.
    Config(Option<String>, Option<ConfigValue>),
    /// A mode was set or removed.
    Mode(Option<String>, Option<ModeValue>),
    /// The id high-water mark moved.
    MaxId(Option<MaxIdValue>),
}

/// Why a record in the topic could not be understood.
#[derive(thiserror::Error)]
#[error("undecodable registry record: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

fanout_core::debug_as_report!(DecodeError);

impl LogRecord {
    /// Splits the record into the key and value bytes written to Kafka.
    pub fn encode(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), serde_json::Error> {
        fn value<T: Serialize>(v: &Option<T>) -> Result<Option<Vec<u8>>, serde_json::Error> {
            v.as_ref().map(serde_json::to_vec).transpose()
        }
        let (key, value) = match self {
            LogRecord::Schema(subject, version, v) => {
                (LogKey::Schema { subject: subject.clone(), version: *version }, value(v)?)
            }
            LogRecord::Config(subject, v) => (LogKey::Config { subject: subject.clone() }, value(v)?),
            LogRecord::Mode(subject, v) => (LogKey::Mode { subject: subject.clone() }, value(v)?),
            LogRecord::MaxId(v) => (LogKey::MaxId, value(v)?),
        };
        Ok((serde_json::to_vec(&key)?, value))
    }

    /// Reads a record back from Kafka's key and value bytes.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, DecodeError> {
        fn parse<'a, T: Deserialize<'a>>(v: Option<&'a [u8]>) -> Result<Option<T>, DecodeError> {
            Ok(v.map(serde_json::from_slice).transpose()?)
        }
        Ok(match serde_json::from_slice::<LogKey>(key)? {
            LogKey::Schema { subject, version } => LogRecord::Schema(subject, version, parse(value)?),
            LogKey::Config { subject } => LogRecord::Config(subject, parse(value)?),
            LogKey::Mode { subject } => LogRecord::Mode(subject, parse(value)?),
            LogKey::MaxId => LogRecord::MaxId(parse(value)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_including_tombstones() {
        let records = [
            LogRecord::Schema(
                "a/b".into(),
                3,
                Some(SchemaValue {
                    id: 7,
                    schema: "\"string\"".into(),
                    schema_type: SchemaType::Avro,
                    references: vec![SchemaReference { name: "x.Y".into(), subject: "y".into(), version: 1 }],
                    deleted: true,
                }),
            ),
            LogRecord::Schema("a".into(), 1, None),
            LogRecord::Config(None, Some(ConfigValue { compatibility_level: "FULL".into() })),
            LogRecord::Config(Some("s".into()), None),
            LogRecord::Mode(Some("s".into()), Some(ModeValue { mode: "READONLY".into() })),
            LogRecord::MaxId(Some(MaxIdValue { id: 9 })),
        ];
        for record in records {
            let (key, value) = record.encode().expect("encodes");
            assert_eq!(LogRecord::decode(&key, value.as_deref()).expect("decodes"), record);
        }
    }

    #[test]
    fn key_is_confluent_like_json() {
        let (key, value) = LogRecord::Schema("s".into(), 1, None).encode().expect("encodes");
        let key: serde_json::Value = serde_json::from_slice(&key).expect("json");
        assert_eq!(key, serde_json::json!({"keytype":"SCHEMA","subject":"s","version":1}));
        assert!(value.is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(LogRecord::decode(b"not json", None).is_err());
        assert!(LogRecord::decode(br#"{"keytype":"SCHEMA","subject":"s","version":1}"#, Some(b"{")).is_err());
    }
}
