//! A registered schema parsed once, in the forms the encoder and decoder need.

use std::sync::{PoisonError, RwLock};

use apache_avro::Schema;

use crate::{RegisteredSchema, SchemaType, SerdeError};

/// A registry schema, parsed: the apache-avro form (resolution, compatibility, generic values)
/// and, when the schema has no references, the `serde_avro_fast` form for the hot path.
pub struct WriterSchema {
    id: u32,
    text: String,
    avro: Schema,
    /// Named types from references; empty for self-contained schemas.
    schemata: Vec<Schema>,
    /// The Parsing Canonical Form: equal forms mean identical binary encodings.
    canonical: String,
    fast: Option<serde_avro_fast::Schema>,
    /// Whether each reader schema seen so far (by address; readers are `'static`) encodes like
    /// this one. Computing a reader's canonical form costs more than decoding a small event, so
    /// it is done once per reader, not per payload.
    verdicts: RwLock<Vec<(usize, bool)>>,
}

impl std::fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSchema")
            .field("id", &self.id)
            .field("canonical", &self.canonical)
            .field("fast", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

impl WriterSchema {
    /// Parses `registered`, whose references' texts are `referenced`.
    pub(crate) fn parse(registered: &RegisteredSchema, referenced: &[String]) -> Result<Self, SerdeError> {
        let what = || format!("id {}", registered.id);
        if registered.schema_type != SchemaType::Avro {
            return Err(SerdeError::InvalidSchema {
                what: what(),
                reason: format!("it is a {:?} schema; only Avro is supported", registered.schema_type),
            });
        }
        let invalid =
            |e: apache_avro::Error| SerdeError::InvalidSchema { what: what(), reason: e.to_string() };
        let (avro, schemata, canonical) = if referenced.is_empty() {
            let avro = Schema::parse_str(&registered.schema).map_err(invalid)?;
            let canonical = avro.canonical_form();
            (avro, Vec::new(), canonical)
        } else {
            let (avro, schemata) =
                Schema::parse_str_with_list(&registered.schema, referenced).map_err(invalid)?;
            let canonical = avro.independent_canonical_form(&schemata).map_err(invalid)?;
            (avro, schemata, canonical)
        };
        // serde_avro_fast cannot see referenced types; such schemas take the apache-avro path.
        let fast = if schemata.is_empty() { registered.schema.parse().ok() } else { None };
        Ok(Self {
            id: registered.id,
            text: registered.schema.clone(),
            avro,
            schemata,
            canonical,
            fast,
            verdicts: RwLock::new(Vec::new()),
        })
    }

    /// Parses an application's own schema text (id 0 until registered).
    pub(crate) fn local(text: &str) -> Result<Self, SerdeError> {
        let registered = RegisteredSchema {
            id: 0,
            schema: text.to_owned(),
            schema_type: SchemaType::Avro,
            references: Vec::new(),
        };
        Self::parse(&registered, &[]).map_err(|e| match e {
            SerdeError::InvalidSchema { reason, .. } => {
                SerdeError::InvalidSchema { what: "given by the application".into(), reason }
            }
            other => other,
        })
    }

    /// The registry id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The schema text as the registry holds it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed schema.
    pub fn schema(&self) -> &Schema {
        &self.avro
    }

    /// The schemas its references define.
    pub fn referenced(&self) -> &[Schema] {
        &self.schemata
    }

    /// The Parsing Canonical Form.
    pub fn canonical_form(&self) -> &str {
        &self.canonical
    }

    /// Whether `reader` has this schema's Parsing Canonical Form, i.e. reads its bytes without
    /// resolution. Remembered per reader.
    pub(crate) fn same_encoding(&self, reader: &'static Schema) -> bool {
        let key = reader as *const Schema as usize;
        let known = self
            .verdicts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, same)| *same);
        known.unwrap_or_else(|| {
            let same = reader.canonical_form() == self.canonical;
            self.verdicts.write().unwrap_or_else(PoisonError::into_inner).push((key, same));
            same
        })
    }

    pub(crate) fn fast(&self) -> Option<&serde_avro_fast::Schema> {
        self.fast.as_ref()
    }

    pub(crate) fn schemata_refs(&self) -> Vec<&Schema> {
        self.schemata.iter().collect()
    }
}
