//! Compatibility levels and the checks they imply, composed from apache-avro's pairwise
//! `can_read(writer, reader)`.

use apache_avro::{schema_compatibility::SchemaCompatibility, Schema};

/// A subject's (or the global) compatibility level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompatibilityLevel {
    /// No check.
    None,
    /// The new schema reads data written with the latest version (the default).
    #[default]
    Backward,
    /// The new schema reads data written with every live version.
    BackwardTransitive,
    /// The latest version reads data written with the new schema.
    Forward,
    /// Every live version reads data written with the new schema.
    ForwardTransitive,
    /// Backward and forward against the latest version.
    Full,
    /// Backward and forward against every live version.
    FullTransitive,
}

/// Every level, for parsing and error messages.
const ALL: [CompatibilityLevel; 7] = [
    CompatibilityLevel::None,
    CompatibilityLevel::Backward,
    CompatibilityLevel::BackwardTransitive,
    CompatibilityLevel::Forward,
    CompatibilityLevel::ForwardTransitive,
    CompatibilityLevel::Full,
    CompatibilityLevel::FullTransitive,
];

impl CompatibilityLevel {
    /// The Confluent name, e.g. `FULL_TRANSITIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a Confluent name, ignoring case (clients send both `full` and `FULL`).
    pub fn parse(name: &str) -> Option<Self> {
        ALL.into_iter().find(|level| level.as_str().eq_ignore_ascii_case(name))
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

/// Checks `new` against `existing` (live versions, oldest first, with their version numbers).
/// Non-transitive levels look at the newest only. Returns the reasons it is incompatible; empty
/// means compatible.
pub fn check(level: CompatibilityLevel, new: &Schema, existing: &[(i32, Schema)]) -> Vec<String> {
    let against = if level.transitive() { existing } else { &existing[existing.len().saturating_sub(1)..] };
    let mut messages = Vec::new();
    for (version, old) in against {
        if level.backward() {
            if let Err(e) = SchemaCompatibility::can_read(old, new) {
                messages.push(format!(
                    "{}: the new schema cannot read data written with version {version}: {e}",
                    level.as_str()
                ));
            }
        }
        if level.forward() {
            if let Err(e) = SchemaCompatibility::can_read(new, old) {
                messages.push(format!(
                    "{}: version {version} cannot read data written with the new schema: {e}",
                    level.as_str()
                ));
            }
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        Schema::parse_str(&format!(r#"{{"type":"record","name":"R","fields":[{fields}]}}"#)).expect("valid")
    }

    fn v1() -> Schema {
        record(r#"{"name":"a","type":"string"}"#)
    }
    /// Adds a field without a default: old data cannot be read (not backward), new data can be
    /// read by old readers (forward).
    fn required_b() -> Schema {
        record(r#"{"name":"a","type":"string"},{"name":"b","type":"int"}"#)
    }
    /// Adds a field with a default: compatible both ways.
    fn optional_b() -> Schema {
        record(r#"{"name":"a","type":"string"},{"name":"b","type":"int","default":0}"#)
    }

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(CompatibilityLevel::parse("full_transitive"), Some(CompatibilityLevel::FullTransitive));
        assert_eq!(CompatibilityLevel::parse("NONE"), Some(CompatibilityLevel::None));
        assert_eq!(CompatibilityLevel::parse("SIDEWAYS"), None);
        for level in ALL {
            assert_eq!(CompatibilityLevel::parse(level.as_str()), Some(level));
        }
    }

    #[test]
    fn directions() {
        let existing = [(1, v1())];
        assert!(!check(CompatibilityLevel::Backward, &required_b(), &existing).is_empty());
        assert!(check(CompatibilityLevel::Forward, &required_b(), &existing).is_empty());
        assert!(!check(CompatibilityLevel::Full, &required_b(), &existing).is_empty());
        assert!(check(CompatibilityLevel::Full, &optional_b(), &existing).is_empty());
        assert!(
            check(CompatibilityLevel::None, &record(r#"{"name":"z","type":"int"}"#), &existing).is_empty()
        );
    }

    #[test]
    fn transitive_checks_every_version_plain_only_the_latest() {
        // Only the oldest version conflicts: int -> long is a promotion one way, not the other.
        let int_a = record(r#"{"name":"a","type":"int"}"#);
        let long_a = record(r#"{"name":"a","type":"long"}"#);
        let existing = [(1, int_a), (2, long_a.clone())];
        // Against v2 only, {a:long} is identical: compatible both ways.
        assert!(check(CompatibilityLevel::Full, &long_a, &existing).is_empty());
        // v1 (int) cannot read long data, so FULL_TRANSITIVE (forward against v1) fails.
        assert!(!check(CompatibilityLevel::FullTransitive, &long_a, &existing).is_empty());
        // Backward transitive: long reads int data (promotion), so it passes.
        assert!(check(CompatibilityLevel::BackwardTransitive, &long_a, &existing).is_empty());
    }

    #[test]
    fn empty_subject_is_compatible() {
        assert!(check(CompatibilityLevel::FullTransitive, &v1(), &[]).is_empty());
    }
}
