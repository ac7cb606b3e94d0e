//! Avro bodies to values: straight into the type when writer and reader schemas encode alike,
//! through apache-avro's schema resolution otherwise. Every path rejects trailing bytes.

use std::io::BufRead;

use apache_avro::{types::Value, Schema};
use serde::de::DeserializeOwned;

use super::schema::WriterSchema;
use crate::SerdeError;

/// `body` into `T`. `same_encoding` says the reader schema's canonical form equals the
/// writer's, so no resolution is needed.
///
/// Inlined, with the rare paths kept out of line: this runs once per consumed event, and every
/// extra call layer copies the decoded value once more.
#[inline(always)]
pub(crate) fn typed<T: DeserializeOwned>(
    writer: &WriterSchema,
    body: &[u8],
    reader: &Schema,
    same_encoding: bool,
) -> Result<T, SerdeError> {
    match (same_encoding, writer.fast()) {
        (true, Some(fast)) => direct(writer.id(), body, fast),
        _ => resolved(writer, body, reader),
    }
}

/// Straight into `T` with `serde_avro_fast`.
#[inline(always)]
fn direct<T: DeserializeOwned>(
    id: u32,
    body: &[u8],
    fast: &serde_avro_fast::Schema,
) -> Result<T, SerdeError> {
    let mut state = serde_avro_fast::de::DeserializerState::from_slice(body, fast);
    match T::deserialize(state.deserializer()) {
        Ok(value) => {
            let trailing = state.into_reader().fill_buf().map(<[u8]>::len).unwrap_or(0);
            if trailing == 0 {
                Ok(value)
            } else {
                Err(SerdeError::TrailingBytes { id, trailing })
            }
        }
        Err(e) => Err(decode_error(id, e)),
    }
}

#[cold]
#[inline(never)]
fn decode_error(id: u32, error: serde_avro_fast::de::DeError) -> SerdeError {
    SerdeError::Decode { id, reason: error.to_string() }
}

/// Through an Avro value resolved from the writer's schema to the reader's.
#[inline(never)]
fn resolved<T: DeserializeOwned>(
    writer: &WriterSchema,
    body: &[u8],
    reader: &Schema,
) -> Result<T, SerdeError> {
    let value = generic(writer, body, Some(reader))?;
    apache_avro::from_value(&value).map_err(|e| SerdeError::Decode {
        id: writer.id(),
        reason: format!("as {}: {e}", std::any::type_name::<T>()),
    })
}

/// The most apache-avro may reserve for one bytes or string value, and the most items it may
/// reserve for one array or map block, before reading them. Its default (512 Mi) lets one
/// record whose block count says 500,000,000 reserve ~28 GB and abort the process; 16 Mi is far
/// above any Kafka record (1 MB by default), and an array block claiming more is refused.
/// A block just under the limit still reserves 16 Mi values (~800 MB) before its items run out,
/// but as address space only: measured, a record claiming 16,000,000 longs in 1,000 bytes raised
/// the process's peak virtual size by 810 MB, its resident size by nothing, and failed in 0.3 ms.
/// Only where address space is capped (`ulimit -v`, `vm.overcommit_memory=2`) can that reserve
/// fail, and a failed allocation aborts.
const MAX_AVRO_ALLOCATION: usize = 16 * 1024 * 1024;

/// Sets apache-avro's allocation limit; only the first call in a process counts, and it must come
/// before apache-avro decodes anything, so every path into it calls this first.
pub(crate) fn limit_allocations() {
    apache_avro::max_allocation_bytes(MAX_AVRO_ALLOCATION);
}

/// `body` as an Avro value, resolved to `reader` when given.
pub(crate) fn generic(
    writer: &WriterSchema,
    body: &[u8],
    reader: Option<&Schema>,
) -> Result<Value, SerdeError> {
    limit_allocations();
    let id = writer.id();
    let mut rest = body;
    // The writer itself is in the list so its own named types (recursive records) resolve too.
    let mut schemata = writer.schemata_refs();
    schemata.push(writer.schema());
    let value = apache_avro::from_avro_datum_schemata(writer.schema(), schemata, &mut rest, reader)
        .map_err(|e| SerdeError::Decode { id, reason: e.to_string() })?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(SerdeError::TrailingBytes { id, trailing: rest.len() })
    }
}
