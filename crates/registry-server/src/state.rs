//! The registry's in-memory model: everything the topic says, folded into maps. Pure; no Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use fanout_schema_registry::protocol::{Compatibility, Mode, SchemaReference, SchemaType, Version};

use crate::record::{LogRecord, SchemaValue};
use crate::schema::{parse_avro, ParsedSchema};

/// A schema as stored under its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSchema {
    /// The text as first registered.
    pub schema: String,
    /// Avro (the only type accepted).
    pub schema_type: SchemaType,
    /// What it refers to.
    pub references: Vec<SchemaReference>,
}

/// One version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionEntry {
    /// The schema id.
    pub id: u32,
    /// Soft-deleted: hidden from the subject, still readable by id.
    pub deleted: bool,
}

/// What makes two registrations "the same schema": type, normalised text (defaults kept) and
/// references.
pub type Identity = (SchemaType, String, Vec<SchemaReference>);

/// Why a subject version lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupError {
    /// The subject has no (visible) versions.
    SubjectNotFound,
    /// The subject exists, the version does not (or is hidden).
    VersionNotFound,
}

/// The folded state of the registry topic.
#[derive(Debug, Default)]
pub struct State {
    subjects: BTreeMap<String, BTreeMap<i32, VersionEntry>>,
    schemas: HashMap<u32, StoredSchema>,
    identities: HashMap<Identity, u32>,
    /// Ids whose identity could not be computed yet: after compaction a schema's record can come
    /// before the records of the schemas it references. Retried by [`State::index_pending`].
    pending: BTreeSet<u32>,
    max_id: u32,
    global_config: Option<Compatibility>,
    subject_config: HashMap<String, Compatibility>,
    global_mode: Option<Mode>,
    subject_mode: HashMap<String, Mode>,
    next_offset: i64,
}

impl State {
    /// The offset after the last record folded in (or known to be skippable).
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Folds in the record at `offset`. Records at or before an offset already applied are
    /// ignored, so a write applied locally and then read again by the tail is applied once, in
    /// log order.
    pub fn apply(&mut self, offset: i64, record: LogRecord) {
        if offset < self.next_offset {
            return;
        }
        self.next_offset = offset + 1;
        self.apply_record(record);
    }

    /// Notes that the log has nothing before `position` left to read (compaction gaps, end of
    /// partition).
    pub fn advance_to(&mut self, position: i64) {
        self.next_offset = self.next_offset.max(position);
    }

    fn apply_record(&mut self, record: LogRecord) {
        match record {
            LogRecord::Schema(subject, version, Some(value)) => {
                self.put_version(subject, version, value);
                self.index_pending();
            }
            LogRecord::Schema(subject, version, None) => self.remove_version(&subject, version),
            LogRecord::Config(None, value) => {
                self.global_config = value.and_then(|v| Compatibility::parse(&v.compatibility_level))
            }
            LogRecord::Config(Some(subject), value) => {
                match value.and_then(|v| Compatibility::parse(&v.compatibility_level)) {
                    Some(level) => self.subject_config.insert(subject, level),
                    None => self.subject_config.remove(&subject),
                };
            }
            LogRecord::Mode(None, value) => self.global_mode = value.and_then(|v| Mode::parse(&v.mode)),
            LogRecord::Mode(Some(subject), value) => {
                match value.and_then(|v| Mode::parse(&v.mode)) {
                    Some(mode) => self.subject_mode.insert(subject, mode),
                    None => self.subject_mode.remove(&subject),
                };
            }
            LogRecord::MaxId(value) => {
                if let Some(v) = value {
                    self.max_id = self.max_id.max(v.id);
                }
            }
        }
    }

    /// Whether `value` at `subject` `version` contradicts what the log already holds: the version
    /// is bound to another id, or the id to another schema. Two writers deciding on the same
    /// state (a leader and a fenced-out one, for a moment) can write both; every instance folds
    /// the log in the same order, so each keeps the first and ignores the second, and no id ever
    /// names two schemas.
    fn contradicts(&self, subject: &str, version: i32, value: &SchemaValue) -> bool {
        if self.subjects.get(subject).and_then(|v| v.get(&version)).is_some_and(|e| e.id != value.id) {
            return true;
        }
        let Some(stored) = self.schemas.get(&value.id) else { return false };
        if stored.schema_type != value.schema_type || stored.references != value.references {
            return true;
        }
        if stored.schema == value.schema {
            return false;
        }
        // Another text of the same schema (registered under another subject) keeps the id.
        let Ok(referenced) = self.referenced_texts(&stored.references) else { return false };
        match (parse_avro(&stored.schema, &referenced), parse_avro(&value.schema, &referenced)) {
            (Ok(first), Ok(second)) => first.normalized != second.normalized,
            // Not judged: as before this rule, the record is taken.
            _ => false,
        }
    }

    /// Whether `record` is what the state holds for its key: false for a schema version the fold
    /// refused because the log already bound that version or id otherwise (see `contradicts`).
    pub fn holds(&self, record: &LogRecord) -> bool {
        match record {
            LogRecord::Schema(subject, version, Some(value)) => {
                self.subjects.get(subject).and_then(|v| v.get(version)).is_some_and(|e| e.id == value.id)
                    && self.schemas.contains_key(&value.id)
            }
            _ => true,
        }
    }

    /// The record that states what the log holds for `subject` `version` now, for rewriting the
    /// winner's value over a refused one under the same key, so compaction keeps the winner.
    pub fn record_of(&self, subject: &str, version: i32) -> Option<LogRecord> {
        let entry = self.subjects.get(subject)?.get(&version)?;
        let stored = self.schemas.get(&entry.id)?;
        Some(LogRecord::Schema(
            subject.to_owned(),
            version,
            Some(SchemaValue {
                id: entry.id,
                schema: stored.schema.clone(),
                schema_type: stored.schema_type,
                references: stored.references.clone(),
                deleted: entry.deleted,
            }),
        ))
    }

    fn put_version(&mut self, subject: String, version: i32, value: SchemaValue) {
        // The id is spent either way: a refused record's id is never handed out again.
        self.max_id = self.max_id.max(value.id);
        if self.contradicts(&subject, version, &value) {
            tracing::warn!(
                subject,
                version,
                id = value.id,
                "ignoring a schema version that contradicts an earlier record (two writers at once)"
            );
            return;
        }
        let id = value.id;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.schemas.entry(id) {
            slot.insert(StoredSchema {
                schema: value.schema,
                schema_type: value.schema_type,
                references: value.references,
            });
            self.pending.insert(id);
        }
        self.subjects
            .entry(subject)
            .or_default()
            .insert(version, VersionEntry { id, deleted: value.deleted });
    }

    fn remove_version(&mut self, subject: &str, version: i32) {
        let Some(versions) = self.subjects.get_mut(subject) else { return };
        let Some(entry) = versions.remove(&version) else { return };
        if versions.is_empty() {
            self.subjects.remove(subject);
        }
        let still_used = self.subjects.values().flat_map(|v| v.values()).any(|e| e.id == entry.id);
        if !still_used {
            self.schemas.remove(&entry.id);
            self.identities.retain(|_, id| *id != entry.id);
            self.pending.remove(&entry.id);
        }
    }

    /// Computes the identities of schemas not indexed yet (see `pending`).
    pub fn index_pending(&mut self) {
        let pending: Vec<u32> = self.pending.iter().copied().collect();
        for id in pending {
            let Some(stored) = self.schemas.get(&id) else {
                self.pending.remove(&id);
                continue;
            };
            if !stored.schema_type.is_avro() {
                continue;
            }
            let Ok(referenced) = self.referenced_texts(&stored.references) else { continue };
            if let Ok(parsed) = parse_avro(&stored.schema, &referenced) {
                let identity = (stored.schema_type, parsed.normalized, stored.references.clone());
                self.identities.entry(identity).or_insert(id);
                self.pending.remove(&id);
            }
        }
    }

    /// The texts of every schema `references` lead to, transitively, each once. Fails with the
    /// first reference that names no stored version.
    pub fn referenced_texts(&self, references: &[SchemaReference]) -> Result<Vec<String>, SchemaReference> {
        let mut seen = BTreeSet::new();
        let mut texts = Vec::new();
        let mut stack: Vec<SchemaReference> = references.to_vec();
        while let Some(reference) = stack.pop() {
            let entry = self
                .subjects
                .get(&reference.subject)
                .and_then(|versions| match reference.version {
                    -1 => versions.values().next_back(),
                    v => versions.get(&v),
                })
                .ok_or_else(|| reference.clone())?;
            if !seen.insert(entry.id) {
                continue;
            }
            let stored = self.schemas.get(&entry.id).ok_or_else(|| reference.clone())?;
            texts.push(stored.schema.clone());
            stack.extend(stored.references.iter().cloned());
        }
        Ok(texts)
    }

    /// Parses the schema stored under `id`, references resolved.
    pub fn parsed(&self, id: u32) -> Option<ParsedSchema> {
        let stored = self.schemas.get(&id)?;
        let referenced = self.referenced_texts(&stored.references).ok()?;
        parse_avro(&stored.schema, &referenced).ok()
    }

    /// The id already given to this schema, under any subject.
    pub fn id_for(&self, identity: &Identity) -> Option<u32> {
        self.identities.get(identity).copied()
    }

    /// The id the next new schema gets: one past the highest ever seen, so ids are never reused.
    pub fn next_id(&self) -> u32 {
        self.max_id + 1
    }

    /// The highest id handed out so far.
    pub fn max_id(&self) -> u32 {
        self.max_id
    }

    /// The version number a new registration in `subject` gets.
    pub fn next_version(&self, subject: &str) -> i32 {
        self.subjects.get(subject).and_then(|v| v.keys().next_back()).map_or(1, |v| v + 1)
    }

    /// The schema stored under `id`.
    pub fn schema(&self, id: u32) -> Option<&StoredSchema> {
        self.schemas.get(&id)
    }

    /// Subjects with a live version (or any version, with `deleted`), sorted.
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| versions.values().any(|e| deleted || !e.deleted))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// All version entries of a subject, soft-deleted included, oldest first.
    pub fn all_versions(&self, subject: &str) -> Vec<(i32, VersionEntry)> {
        self.subjects.get(subject).map(|v| v.iter().map(|(k, e)| (*k, *e)).collect()).unwrap_or_default()
    }

    /// Live versions (or all, with `deleted`), oldest first; `None` when there are none.
    pub fn versions(&self, subject: &str, deleted: bool) -> Option<Vec<(i32, VersionEntry)>> {
        let versions: Vec<_> =
            self.all_versions(subject).into_iter().filter(|(_, e)| deleted || !e.deleted).collect();
        (!versions.is_empty()).then_some(versions)
    }

    /// Finds one version. Soft-deleted versions are visible only with `deleted`.
    pub fn version(
        &self,
        subject: &str,
        spec: Version,
        deleted: bool,
    ) -> Result<(i32, VersionEntry), LookupError> {
        let versions = self.versions(subject, deleted).ok_or(LookupError::SubjectNotFound)?;
        let found = match spec {
            Version::Latest => versions.last().copied(),
            Version::Number(n) => versions.into_iter().find(|(v, _)| *v == n),
        };
        found.ok_or(LookupError::VersionNotFound)
    }

    /// Every (subject, version, soft-deleted) that uses `id`.
    pub fn usages(&self, id: u32) -> Vec<(String, i32, bool)> {
        self.subjects
            .iter()
            .flat_map(|(s, versions)| {
                versions.iter().filter(|(_, e)| e.id == id).map(move |(v, e)| (s.clone(), *v, e.deleted))
            })
            .collect()
    }

    /// Whether some version (only live ones unless `include_deleted`) refers to `subject` at
    /// `version`.
    pub fn is_referenced(&self, subject: &str, version: i32, include_deleted: bool) -> bool {
        self.subjects.values().flat_map(|v| v.values()).filter(|e| include_deleted || !e.deleted).any(|e| {
            self.schemas
                .get(&e.id)
                .is_some_and(|s| s.references.iter().any(|r| r.subject == subject && r.version == version))
        })
    }

    /// The subject's own compatibility level, if set.
    pub fn subject_config(&self, subject: &str) -> Option<Compatibility> {
        self.subject_config.get(subject).copied()
    }

    /// The global level, if set.
    pub fn global_config(&self) -> Option<Compatibility> {
        self.global_config
    }

    /// The level that applies to `subject`: its own, else the global one, else BACKWARD.
    pub fn effective_config(&self, subject: &str) -> Compatibility {
        self.subject_config(subject).or(self.global_config).unwrap_or_default()
    }

    /// The subject's own mode, if set.
    pub fn subject_mode(&self, subject: &str) -> Option<Mode> {
        self.subject_mode.get(subject).copied()
    }

    /// The global mode, if set.
    pub fn global_mode(&self) -> Option<Mode> {
        self.global_mode
    }

    /// The mode that applies to `subject`; a global READONLY_OVERRIDE beats subject modes.
    pub fn effective_mode(&self, subject: &str) -> Mode {
        match self.global_mode {
            Some(Mode::ReadOnlyOverride) => Mode::ReadOnlyOverride,
            global => self.subject_mode(subject).or(global).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ConfigValue, MaxIdValue, ModeValue};

    const STRING: &str = r#""string""#;
    const RECORD: &str = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;

    fn put(id: u32, schema: &str, deleted: bool) -> Option<SchemaValue> {
        Some(SchemaValue {
            id,
            schema: schema.into(),
            schema_type: SchemaType::Avro,
            references: vec![],
            deleted,
        })
    }

    fn state(records: Vec<LogRecord>) -> State {
        let mut state = State::default();
        for (offset, record) in records.into_iter().enumerate() {
            state.apply(offset as i64, record);
        }
        state.index_pending();
        state
    }

    fn identity(schema: &str) -> Identity {
        (SchemaType::Avro, parse_avro(schema, &[]).expect("valid").normalized, vec![])
    }

    #[test]
    fn versions_ids_and_identities_fold_in() {
        let s = state(vec![
            LogRecord::Schema("a".into(), 1, put(1, STRING, false)),
            LogRecord::Schema("a".into(), 2, put(2, RECORD, false)),
            LogRecord::Schema("b".into(), 1, put(1, STRING, false)),
        ]);
        assert_eq!(s.subjects(false), vec!["a", "b"]);
        assert_eq!(s.version("a", Version::Latest, false), Ok((2, VersionEntry { id: 2, deleted: false })));
        assert_eq!(s.id_for(&identity(r#"{"type": "string"}"#)), Some(1));
        assert_eq!(s.id_for(&identity(RECORD)), Some(2));
        assert_eq!(s.next_id(), 3);
        assert_eq!(s.next_version("a"), 3);
        assert_eq!(s.next_version("new"), 1);
        assert_eq!(s.usages(1), vec![("a".into(), 1, false), ("b".into(), 1, false)]);
    }

    #[test]
    fn a_second_writers_version_or_id_is_refused_and_every_instance_agrees() {
        // Two writers decided on the same state: both took version 1 of `a`, or both took id 1.
        let taken_version = LogRecord::Schema("a".into(), 1, put(2, RECORD, false));
        let s = state(vec![LogRecord::Schema("a".into(), 1, put(1, STRING, false)), taken_version.clone()]);
        assert_eq!(
            s.version("a", Version::Number(1), false),
            Ok((1, VersionEntry { id: 1, deleted: false }))
        );
        assert!(s.schema(2).is_none(), "the refused record stores nothing");
        assert!(!s.holds(&taken_version));
        assert_eq!(s.next_id(), 3, "a refused record's id is spent all the same");
        assert_eq!(s.record_of("a", 1), Some(LogRecord::Schema("a".into(), 1, put(1, STRING, false))));

        let taken_id = LogRecord::Schema("b".into(), 1, put(1, RECORD, false));
        let s = state(vec![LogRecord::Schema("a".into(), 1, put(1, STRING, false)), taken_id.clone()]);
        assert_eq!(s.schema(1).map(|stored| stored.schema.as_str()), Some(STRING));
        assert!(s.subjects(true) == vec!["a"], "b got no version");
        assert!(!s.holds(&taken_id));
    }

    #[test]
    fn the_same_schema_written_otherwise_keeps_its_id_under_another_subject() {
        let other_text = LogRecord::Schema("b".into(), 1, put(1, r#"{"type": "string"}"#, false));
        let s = state(vec![LogRecord::Schema("a".into(), 1, put(1, STRING, false)), other_text.clone()]);
        assert!(s.holds(&other_text));
        assert_eq!(s.usages(1), vec![("a".into(), 1, false), ("b".into(), 1, false)]);
    }

    #[test]
    fn soft_delete_hides_from_subject_but_not_from_id() {
        let s = state(vec![
            LogRecord::Schema("a".into(), 1, put(1, STRING, false)),
            LogRecord::Schema("a".into(), 1, put(1, STRING, true)),
        ]);
        assert!(s.subjects(false).is_empty());
        assert_eq!(s.subjects(true), vec!["a"]);
        assert_eq!(s.version("a", Version::Number(1), false), Err(LookupError::SubjectNotFound));
        assert!(s.version("a", Version::Number(1), true).is_ok());
        assert!(s.schema(1).is_some());
    }

    #[test]
    fn tombstone_forgets_but_ids_are_never_reused() {
        let s = state(vec![
            LogRecord::Schema("a".into(), 1, put(1, STRING, false)),
            LogRecord::Schema("a".into(), 2, put(2, RECORD, false)),
            LogRecord::MaxId(Some(MaxIdValue { id: 2 })),
            LogRecord::Schema("a".into(), 2, None),
        ]);
        assert!(s.schema(2).is_none());
        assert_eq!(s.id_for(&identity(RECORD)), None);
        assert_eq!(s.next_id(), 3);
        // Without the MaxId record (say compaction dropped the schema's record) the mark still holds.
        let compacted = state(vec![
            LogRecord::Schema("a".into(), 1, put(1, STRING, false)),
            LogRecord::MaxId(Some(MaxIdValue { id: 2 })),
        ]);
        assert_eq!(compacted.next_id(), 3);
    }

    #[test]
    fn replays_are_ignored_by_offset() {
        let mut s = State::default();
        s.apply(0, LogRecord::Schema("a".into(), 1, put(1, STRING, false)));
        s.apply(1, LogRecord::Schema("a".into(), 1, None));
        // The tail reading offset 0 again must not resurrect the version.
        s.apply(0, LogRecord::Schema("a".into(), 1, put(1, STRING, false)));
        assert!(s.subjects(true).is_empty());
        assert_eq!(s.next_offset(), 2);
        s.advance_to(10);
        assert_eq!(s.next_offset(), 10);
    }

    #[test]
    fn config_and_mode_resolution() {
        let level = |l: &str| Some(ConfigValue { compatibility_level: l.into() });
        let mode = |m: &str| Some(ModeValue { mode: m.into() });
        let mut s = state(vec![]);
        assert_eq!(s.effective_config("x"), Compatibility::Backward);
        s.apply(0, LogRecord::Config(None, level("FULL")));
        s.apply(1, LogRecord::Config(Some("x".into()), level("NONE")));
        assert_eq!(s.effective_config("x"), Compatibility::None);
        assert_eq!(s.effective_config("y"), Compatibility::Full);
        s.apply(2, LogRecord::Config(Some("x".into()), None));
        assert_eq!(s.subject_config("x"), None);
        s.apply(3, LogRecord::Mode(Some("x".into()), mode("READONLY")));
        assert!(s.effective_mode("x").is_read_only());
        assert!(!s.effective_mode("y").is_read_only());
        s.apply(4, LogRecord::Mode(None, mode("READONLY_OVERRIDE")));
        s.apply(5, LogRecord::Mode(Some("y".into()), mode("READWRITE")));
        assert!(s.effective_mode("y").is_read_only());
    }

    #[test]
    fn references_resolve_even_when_compaction_reorders_records() {
        let address = r#"{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}"#;
        let person = r#"{"type":"record","name":"Person","fields":[{"name":"home","type":"Address"}]}"#;
        let reference = SchemaReference { name: "Address".into(), subject: "address".into(), version: 1 };
        let mut referencing = put(2, person, false);
        if let Some(v) = referencing.as_mut() {
            v.references = vec![reference.clone()];
        }
        // The referencing schema comes first, as after a rewrite of the referenced key.
        let mut s = State::default();
        s.apply(5, LogRecord::Schema("person".into(), 1, referencing));
        s.index_pending();
        s.apply(6, LogRecord::Schema("address".into(), 1, put(1, address, true)));
        s.index_pending();
        let parsed = parse_avro(person, &[address.to_owned()]).expect("valid");
        assert_eq!(s.id_for(&(SchemaType::Avro, parsed.normalized, vec![reference])), Some(2));
        assert!(s.is_referenced("address", 1, false));
        assert!(s.parsed(2).is_some());
    }
}
