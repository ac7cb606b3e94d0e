//! The producer's hot path: values of one type to framed payloads, with the schema id resolved
//! ahead of time.

use std::{
    marker::PhantomData,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use serde::Serialize;

use super::schema::WriterSchema;
use crate::{wire, SerdeError};

enum Plan {
    /// The value's own schema is the registered one: serialise straight to bytes.
    Direct(Arc<WriterSchema>),
    /// The registered schema differs (e.g. `UseLatest` picked a newer version with defaulted
    /// fields): go through an Avro value and resolve it, filling defaults.
    Resolve(Arc<WriterSchema>),
}

/// Encodes values of `T` for one subject with one schema id. Built by
/// [`AvroSerde::encoder`](crate::AvroSerde::encoder); encoding is synchronous and makes no
/// registry call.
pub struct Encoder<T> {
    id: u32,
    subject: String,
    plan: Plan,
    /// The last payload's size, so the next `encode` allocates once.
    size_hint: AtomicUsize,
    _type: PhantomData<fn(&T)>,
}

impl<T> std::fmt::Debug for Encoder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plan = match self.plan {
            Plan::Direct(_) => "direct",
            Plan::Resolve(_) => "resolve",
        };
        f.debug_struct("Encoder")
            .field("type", &std::any::type_name::<T>())
            .field("id", &self.id)
            .field("subject", &self.subject)
            .field("plan", &plan)
            .finish()
    }
}

impl<T: Serialize> Encoder<T> {
    pub(crate) fn new(id: u32, subject: String, writer: Arc<WriterSchema>, direct: bool) -> Self {
        let plan =
            if direct && writer.fast().is_some() { Plan::Direct(writer) } else { Plan::Resolve(writer) };
        Self { id, subject, plan, size_hint: AtomicUsize::new(64), _type: PhantomData }
    }

    /// The schema id written in every payload.
    pub fn schema_id(&self) -> u32 {
        self.id
    }

    /// The subject the id was resolved under.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// `value` as a Confluent-framed payload.
    pub fn encode(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        let mut out = Vec::with_capacity(self.size_hint.load(Ordering::Relaxed));
        self.encode_into(value, &mut out)?;
        self.size_hint.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }

    /// Appends `value`'s framed payload to `out`; on error `out` is left as it was.
    pub fn encode_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        let start = out.len();
        wire::write_header(self.id, out);
        let result = match &self.plan {
            Plan::Direct(writer) => match writer.fast() {
                Some(fast) => {
                    let mut config = serde_avro_fast::ser::SerializerConfig::new(fast);
                    serde_avro_fast::to_datum(value, &mut *out, &mut config)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                }
                None => Err("internal: direct plan without a fast schema".to_owned()),
            },
            Plan::Resolve(writer) => encode_resolved(value, writer, out),
        };
        result.map_err(|reason| {
            out.truncate(start);
            SerdeError::Encode { id: self.id, subject: self.subject.clone(), reason }
        })
    }
}

fn encode_resolved<T: Serialize>(value: &T, writer: &WriterSchema, out: &mut Vec<u8>) -> Result<(), String> {
    let value = apache_avro::to_value(value).map_err(|e| e.to_string())?;
    let value = value.resolve_schemata(writer.schema(), writer.schemata_refs()).map_err(|e| e.to_string())?;
    let bytes = apache_avro::to_avro_datum_schemata(writer.schema(), writer.schemata_refs(), value)
        .map_err(|e| e.to_string())?;
    out.extend_from_slice(&bytes);
    Ok(())
}
