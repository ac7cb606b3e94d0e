//! What each registry operation does: decide on the current state, write the records that express
//! the decision, answer. HTTP lives in `api.rs`.

use fanout_schema_registry::protocol::{
    Compatibility, Mode, SchemaReference, SchemaType, UnregisteredSchema, Version,
};

use crate::compat;
use crate::error::ApiError;
use crate::record::{ConfigValue, LogRecord, MaxIdValue, ModeValue, SchemaValue};
use crate::schema::{parse_new, ParsedSchema};
use crate::state::{Identity, LookupError, State, StoredSchema};
use crate::store::Store;

/// A subject version with its schema, as GET and lookup answer it.
#[derive(Debug)]
pub struct Found {
    pub subject: String,
    pub version: i32,
    pub id: u32,
    pub schema: StoredSchema,
}

pub(crate) struct Prepared {
    pub(crate) parsed: ParsedSchema,
    identity: Identity,
    text: String,
    references: Vec<SchemaReference>,
}

pub(crate) fn prepare(state: &State, request: &UnregisteredSchema) -> Result<Prepared, ApiError> {
    let text = Some(request.schema.as_str()).filter(|s| !s.trim().is_empty());
    let text = text.ok_or_else(|| ApiError::invalid_schema("empty schema"))?;
    let unsupported = match request.schema_type {
        SchemaType::Avro => None,
        SchemaType::Json => Some("JSON"),
        SchemaType::Protobuf => Some("PROTOBUF"),
        SchemaType::Unknown => Some("unknown"),
    };
    if let Some(kind) = unsupported {
        return Err(ApiError::invalid_schema(format!("schema type {kind} is not supported; only AVRO is")));
    }
    let references = request.references.clone();
    let referenced = state.referenced_texts(&references).map_err(|r| {
        ApiError::invalid_schema(format!(
            "reference {} (subject {}, version {}) not found",
            r.name, r.subject, r.version
        ))
    })?;
    let parsed = parse_new(text, &referenced).map_err(|e| ApiError::schema(&e))?;
    let identity = (SchemaType::Avro, parsed.normalized.clone(), references.clone());
    Ok(Prepared { parsed, identity, text: text.to_owned(), references })
}

fn ensure_writable(state: &State, subject: &str) -> Result<(), ApiError> {
    if state.effective_mode(subject).is_read_only() {
        return Err(ApiError::read_only(subject));
    }
    Ok(())
}

fn lookup_error<'a>(subject: &'a str, version: &'a str) -> impl Fn(LookupError) -> ApiError + 'a {
    move |e| match e {
        LookupError::SubjectNotFound => ApiError::subject_not_found(subject),
        LookupError::VersionNotFound => ApiError::version_not_found(version),
    }
}

/// The live versions of `subject`, parsed, oldest first.
fn parsed_versions(state: &State, subject: &str) -> Vec<(i32, apache_avro::Schema)> {
    state
        .versions(subject, false)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(version, entry)| match state.parsed(entry.id) {
            Some(parsed) => Some((version, parsed.resolved)),
            None => {
                tracing::warn!(
                    subject,
                    version,
                    id = entry.id,
                    "stored schema no longer parses; not checked"
                );
                None
            }
        })
        .collect()
}

/// How often a registration is decided again after losing to another writer's record.
const REGISTER_ATTEMPTS: u32 = 5;

/// Registers `request` under `subject`, answering the id. An identical schema already live in
/// the subject answers its id and adds nothing; one known under another subject keeps its id.
pub async fn register(store: &Store, subject: &str, request: &UnregisteredSchema) -> Result<u32, ApiError> {
    for attempt in 1..=REGISTER_ATTEMPTS {
        let lock = store.lock_writes().await;
        let (id, record) = {
            let state = store.state();
            ensure_writable(&state, subject)?;
            let prepared = prepare(&state, request)?;
            let known = state.id_for(&prepared.identity);
            let live = state.versions(subject, false).unwrap_or_default();
            if let Some(id) = known.filter(|id| live.iter().any(|(_, e)| e.id == *id)) {
                return Ok(id);
            }
            let messages = compat::check(
                state.effective_config(subject),
                &prepared.parsed.resolved,
                &parsed_versions(&state, subject),
            );
            if !messages.is_empty() {
                return Err(ApiError::incompatible(subject, &messages));
            }
            let id = known.unwrap_or_else(|| state.next_id());
            let value = SchemaValue {
                id,
                schema: prepared.text,
                schema_type: SchemaType::Avro,
                references: prepared.references,
                deleted: false,
            };
            (id, LogRecord::Schema(subject.to_owned(), state.next_version(subject), Some(value)))
        };
        if store.write(&lock, vec![record.clone()]).await? {
            return Ok(id);
        }
        // Another writer's record came first. Ours stays in the log as the newest value of its
        // key, so write the winner's value again over it: compaction then keeps the winner.
        if let LogRecord::Schema(subject, version, _) = &record {
            let winner = store.state().record_of(subject, *version);
            if let Some(winner) = winner {
                store.write(&lock, vec![winner]).await?;
            }
        }
        tracing::warn!(subject, attempt, "another writer registered first; deciding again");
    }
    Err(ApiError::timeout(format!(
        "registering under {subject} lost to other writers {REGISTER_ATTEMPTS} times in a row"
    )))
}

/// Finds the version of `subject` holding `request`'s schema.
pub fn lookup(
    store: &Store,
    subject: &str,
    request: &UnregisteredSchema,
    deleted: bool,
) -> Result<Found, ApiError> {
    let state = store.state();
    // The schema is judged first, as Confluent does: an invalid one is 42201 even under a
    // subject that does not exist.
    let prepared = prepare(&state, request)?;
    let versions = state.versions(subject, deleted).ok_or_else(|| ApiError::subject_not_found(subject))?;
    let id = state.id_for(&prepared.identity).ok_or_else(ApiError::schema_not_in_subject)?;
    let (version, _) =
        versions.into_iter().rev().find(|(_, e)| e.id == id).ok_or_else(ApiError::schema_not_in_subject)?;
    let schema = state.schema(id).cloned().ok_or_else(ApiError::schema_not_in_subject)?;
    Ok(Found { subject: subject.to_owned(), version, id, schema })
}

/// One version of a subject.
pub fn get_version(
    store: &Store,
    subject: &str,
    spec: Version,
    raw: &str,
    deleted: bool,
) -> Result<Found, ApiError> {
    let state = store.state();
    let (version, entry) = state.version(subject, spec, deleted).map_err(lookup_error(subject, raw))?;
    let schema = state.schema(entry.id).cloned().ok_or_else(|| ApiError::schema_not_found(entry.id))?;
    Ok(Found { subject: subject.to_owned(), version, id: entry.id, schema })
}

fn schema_value(state: &State, id: u32, deleted: bool) -> Result<SchemaValue, ApiError> {
    let stored = state.schema(id).ok_or_else(|| ApiError::schema_not_found(id))?;
    Ok(SchemaValue {
        id,
        schema: stored.schema.clone(),
        schema_type: stored.schema_type,
        references: stored.references.clone(),
        deleted,
    })
}

/// The records that permanently remove `versions` of `subject`. The id mark goes first, so even
/// when these were the newest ids and compaction drops their records, ids are not reused.
fn permanent_removal(state: &State, subject: &str, versions: &[i32]) -> Vec<LogRecord> {
    let mut records = vec![LogRecord::MaxId(Some(MaxIdValue { id: state.max_id() }))];
    records.extend(versions.iter().map(|v| LogRecord::Schema(subject.to_owned(), *v, None)));
    records
}

/// Deletes a whole subject: soft (hide live versions) or permanent (after a soft delete).
/// Answers the versions deleted.
pub async fn delete_subject(store: &Store, subject: &str, permanent: bool) -> Result<Vec<i32>, ApiError> {
    let lock = store.lock_writes().await;
    let (versions, records) = {
        let state = store.state();
        let all = state.all_versions(subject);
        if all.is_empty() {
            return Err(ApiError::subject_not_found(subject));
        }
        ensure_writable(&state, subject)?;
        let live: Vec<i32> = all.iter().filter(|(_, e)| !e.deleted).map(|(v, _)| *v).collect();
        if permanent {
            if !live.is_empty() {
                return Err(ApiError::subject_not_soft_deleted(subject));
            }
            let versions: Vec<i32> = all.iter().map(|(v, _)| *v).collect();
            if let Some(v) = versions.iter().find(|v| state.is_referenced(subject, **v, true)) {
                return Err(ApiError::referenced(subject, *v));
            }
            let mut records = permanent_removal(&state, subject, &versions);
            // A subject deleted for good takes its own settings with it.
            if state.subject_config(subject).is_some() {
                records.push(LogRecord::Config(Some(subject.to_owned()), None));
            }
            if state.subject_mode(subject).is_some() {
                records.push(LogRecord::Mode(Some(subject.to_owned()), None));
            }
            (versions, records)
        } else {
            if live.is_empty() {
                return Err(ApiError::subject_soft_deleted(subject));
            }
            if let Some(v) = live.iter().find(|v| state.is_referenced(subject, **v, false)) {
                return Err(ApiError::referenced(subject, *v));
            }
            let mut records = Vec::new();
            for (version, entry) in all.iter().filter(|(_, e)| !e.deleted) {
                let value = schema_value(&state, entry.id, true)?;
                records.push(LogRecord::Schema(subject.to_owned(), *version, Some(value)));
            }
            (live, records)
        }
    };
    store.write(&lock, records).await?;
    Ok(versions)
}

/// Deletes one version: soft, or permanent after a soft delete. Answers the version.
pub async fn delete_version(
    store: &Store,
    subject: &str,
    spec: Version,
    raw: &str,
    permanent: bool,
) -> Result<i32, ApiError> {
    let lock = store.lock_writes().await;
    let (version, records) = {
        let state = store.state();
        let all = state.all_versions(subject);
        if all.is_empty() {
            return Err(ApiError::subject_not_found(subject));
        }
        ensure_writable(&state, subject)?;
        let found = match spec {
            // "latest" of a soft delete is the newest live version; of a permanent delete, the
            // newest version at all.
            Version::Latest => all.iter().rev().find(|(_, e)| permanent || !e.deleted),
            Version::Number(n) => all.iter().find(|(v, _)| *v == n),
        };
        let (version, entry) = *found.ok_or_else(|| ApiError::version_not_found(raw))?;
        if permanent {
            if !entry.deleted {
                return Err(ApiError::version_not_soft_deleted(subject, version));
            }
            if state.is_referenced(subject, version, true) {
                return Err(ApiError::referenced(subject, version));
            }
            (version, permanent_removal(&state, subject, &[version]))
        } else {
            if entry.deleted {
                return Err(ApiError::version_soft_deleted(subject, version));
            }
            if state.is_referenced(subject, version, false) {
                return Err(ApiError::referenced(subject, version));
            }
            let value = schema_value(&state, entry.id, true)?;
            (version, vec![LogRecord::Schema(subject.to_owned(), version, Some(value))])
        }
    };
    store.write(&lock, records).await?;
    Ok(version)
}

/// Tests `request` against `subject`: all versions the level implies (`spec` `None`), or one.
/// Answers the incompatibilities; empty means compatible.
pub fn test_compatibility(
    store: &Store,
    subject: &str,
    spec: Option<(Version, &str)>,
    request: &UnregisteredSchema,
) -> Result<Vec<String>, ApiError> {
    let state = store.state();
    let prepared = prepare(&state, request)?;
    let level = state.effective_config(subject);
    let existing = parsed_versions(&state, subject);
    let against = match spec {
        None => existing,
        Some((Version::Latest, _)) => existing.into_iter().last().into_iter().collect(),
        Some((spec @ Version::Number(_), raw)) => {
            let (version, _) = state.version(subject, spec, false).map_err(lookup_error(subject, raw))?;
            existing.into_iter().filter(|(v, _)| *v == version).collect()
        }
    };
    Ok(compat::check(level, &prepared.parsed.resolved, &against))
}

/// Sets (or with `None` removes) a compatibility level; answers the level before.
pub async fn set_config(
    store: &Store,
    subject: Option<&str>,
    level: Option<Compatibility>,
) -> Result<Option<Compatibility>, ApiError> {
    let lock = store.lock_writes().await;
    let before = {
        let state = store.state();
        match subject {
            Some(s) => state.subject_config(s),
            None => state.global_config(),
        }
    };
    let value = level.map(|l| ConfigValue { compatibility_level: l.as_str().to_owned() });
    store.write(&lock, vec![LogRecord::Config(subject.map(str::to_owned), value)]).await?;
    Ok(before)
}

/// Sets (or with `None` removes) a mode; answers the mode before.
pub async fn set_mode(
    store: &Store,
    subject: Option<&str>,
    mode: Option<Mode>,
) -> Result<Option<Mode>, ApiError> {
    let lock = store.lock_writes().await;
    let before = {
        let state = store.state();
        match subject {
            Some(s) => state.subject_mode(s),
            None => state.global_mode(),
        }
    };
    let value = mode.map(|m| ModeValue { mode: m.as_str().to_owned() });
    store.write(&lock, vec![LogRecord::Mode(subject.map(str::to_owned), value)]).await?;
    Ok(before)
}
