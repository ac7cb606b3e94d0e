//! Subject name strategies: which registry subject a topic's schema is registered under.

use serde::{Deserialize, Serialize};

/// Whether a schema describes record keys or values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SubjectKind {
    /// The record key.
    Key,
    /// The record value (the usual case).
    #[default]
    Value,
}

impl SubjectKind {
    fn suffix(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Value => "value",
        }
    }
}

/// Confluent's subject name strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectNameStrategy {
    /// `{topic}-value` / `{topic}-key`: one schema lineage per topic (Confluent's default).
    #[default]
    TopicName,
    /// The record's full name: one lineage per record type, across topics.
    RecordName,
    /// `{topic}-{fullname}`: one lineage per record type per topic.
    TopicRecordName,
}

/// A strategy that needs a record name was given a schema that has none.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject name strategy {strategy:?} needs a named schema (record, enum or fixed), but topic {topic}'s schema has no name")]
pub struct NoRecordName {
    /// The strategy.
    pub strategy: SubjectNameStrategy,
    /// The topic.
    pub topic: String,
}

fanout_core::debug_as_report!(NoRecordName);

impl SubjectNameStrategy {
    /// The subject for `topic` and a schema whose full name is `record_name` (`None` for
    /// unnamed schemas such as a bare `"string"`).
    ///
    /// ```
    /// use fanout_schema_registry::{SubjectKind, SubjectNameStrategy};
    ///
    /// let name = Some("dev.fanout.events.PostPublished");
    /// assert_eq!(SubjectNameStrategy::TopicName.subject("post.published", SubjectKind::Value, name).unwrap(), "post.published-value");
    /// assert_eq!(SubjectNameStrategy::RecordName.subject("post.published", SubjectKind::Value, name).unwrap(), "dev.fanout.events.PostPublished");
    /// ```
    pub fn subject(
        self,
        topic: &str,
        kind: SubjectKind,
        record_name: Option<&str>,
    ) -> Result<String, NoRecordName> {
        let named = || record_name.ok_or_else(|| NoRecordName { strategy: self, topic: topic.to_owned() });
        Ok(match self {
            Self::TopicName => format!("{topic}-{}", kind.suffix()),
            Self::RecordName => named()?.to_owned(),
            Self::TopicRecordName => format!("{topic}-{}", named()?),
        })
    }

    /// The subject for `topic` and a parsed schema.
    pub fn subject_for_schema(
        self,
        topic: &str,
        kind: SubjectKind,
        schema: &apache_avro::Schema,
    ) -> Result<String, NoRecordName> {
        let name = schema.name().map(|n| n.fullname(None));
        self.subject(topic, kind, name.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use fanout_core::Event;
    use fanout_events::PostPublished;

    use super::*;

    #[test]
    fn topic_name_strategy() {
        let s = SubjectNameStrategy::TopicName;
        assert_eq!(s.subject("t", SubjectKind::Value, None).unwrap(), "t-value");
        assert_eq!(s.subject("t", SubjectKind::Key, None).unwrap(), "t-key");
        assert_eq!(SubjectNameStrategy::default(), s);
    }

    #[test]
    fn record_strategies_use_the_full_name() {
        let schema = PostPublished::schema();
        let record =
            SubjectNameStrategy::RecordName.subject_for_schema("post.published", SubjectKind::Value, schema);
        assert_eq!(record.unwrap(), "dev.fanout.events.PostPublished");
        let topic_record = SubjectNameStrategy::TopicRecordName.subject_for_schema(
            "post.published",
            SubjectKind::Key,
            schema,
        );
        assert_eq!(topic_record.unwrap(), "post.published-dev.fanout.events.PostPublished");
    }

    #[test]
    fn record_strategies_need_a_name() {
        let schema = apache_avro::Schema::parse_str("\"string\"").unwrap();
        let err =
            SubjectNameStrategy::RecordName.subject_for_schema("t", SubjectKind::Value, &schema).unwrap_err();
        assert!(err.to_string().contains("topic t"), "{err}");
        assert!(SubjectNameStrategy::TopicName.subject_for_schema("t", SubjectKind::Value, &schema).is_ok());
    }

    #[test]
    fn strategy_names_in_config() {
        let s: SubjectNameStrategy = serde_json::from_str("\"topic_record_name\"").unwrap();
        assert_eq!(s, SubjectNameStrategy::TopicRecordName);
    }
}
