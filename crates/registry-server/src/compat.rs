//! The checks compatibility levels imply, composed from apache-avro's pairwise
//! `can_read(writer, reader)`.

use apache_avro::{schema_compatibility::SchemaCompatibility, Schema};
use fanout_schema_registry::Compatibility;

/// Checks `new` against `existing` (live versions, oldest first, with their version numbers).
/// Non-transitive levels look at the newest only. Returns the reasons it is incompatible; empty
/// means compatible.
pub fn check(level: Compatibility, new: &Schema, existing: &[(i32, Schema)]) -> Vec<String> {
    let against =
        if level.is_transitive() { existing } else { &existing[existing.len().saturating_sub(1)..] };
    let mut messages = Vec::new();
    for (version, old) in against {
        if level.checks_backward() {
            if let Err(e) = SchemaCompatibility::can_read(old, new) {
                messages.push(format!(
                    "{}: the new schema cannot read data written with version {version}: {e}",
                    level.as_str()
                ));
            }
        }
        if level.checks_forward() {
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
    fn directions() {
        let existing = [(1, v1())];
        assert!(!check(Compatibility::Backward, &required_b(), &existing).is_empty());
        assert!(check(Compatibility::Forward, &required_b(), &existing).is_empty());
        assert!(!check(Compatibility::Full, &required_b(), &existing).is_empty());
        assert!(check(Compatibility::Full, &optional_b(), &existing).is_empty());
        assert!(check(Compatibility::None, &record(r#"{"name":"z","type":"int"}"#), &existing).is_empty());
    }

    #[test]
    fn transitive_checks_every_version_plain_only_the_latest() {
        // Only the oldest version conflicts: int -> long is a promotion one way, not the other.
        let int_a = record(r#"{"name":"a","type":"int"}"#);
        let long_a = record(r#"{"name":"a","type":"long"}"#);
        let existing = [(1, int_a), (2, long_a.clone())];
        // Against v2 only, {a:long} is identical: compatible both ways.
        assert!(check(Compatibility::Full, &long_a, &existing).is_empty());
        // v1 (int) cannot read long data, so FULL_TRANSITIVE (forward against v1) fails.
        assert!(!check(Compatibility::FullTransitive, &long_a, &existing).is_empty());
        // Backward transitive: long reads int data (promotion), so it passes.
        assert!(check(Compatibility::BackwardTransitive, &long_a, &existing).is_empty());
    }

    #[test]
    fn empty_subject_is_compatible() {
        assert!(check(Compatibility::FullTransitive, &v1(), &[]).is_empty());
    }
}
