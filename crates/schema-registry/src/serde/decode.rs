//! Avro bodies to values: straight into the type when writer and reader schemas encode alike,
//! through apache-avro's schema resolution otherwise. Every path rejects trailing bytes.

use std::io::BufRead;

use apache_avro::{types::Value, Schema};
use serde::de::DeserializeOwned;

use super::schema::WriterSchema;
use crate::SerdeError;

/// `body` into `T`. `same_encoding` says the reader schema's canonical form equals the
/// writer's, so no resolution is needed.
pub(crate) fn typed<T: DeserializeOwned>(
    writer: &WriterSchema,
    body: &[u8],
    reader: &Schema,
    same_encoding: bool,
) -> Result<T, SerdeError> {
    let id = writer.id();
    if let (true, Some(fast)) = (same_encoding, writer.fast()) {
        let mut state = serde_avro_fast::de::DeserializerState::from_slice(body, fast);
        let value = T::deserialize(state.deserializer())
            .map_err(|e| SerdeError::Decode { id, reason: e.to_string() })?;
        let mut rest = state.into_reader();
        let trailing = rest.fill_buf().map(<[u8]>::len).unwrap_or(0);
        return if trailing == 0 { Ok(value) } else { Err(SerdeError::TrailingBytes { id, trailing }) };
    }
    let value = generic(writer, body, Some(reader))?;
    apache_avro::from_value(&value)
        .map_err(|e| SerdeError::Decode { id, reason: format!("as {}: {e}", std::any::type_name::<T>()) })
}

/// `body` as an Avro value, resolved to `reader` when given.
pub(crate) fn generic(
    writer: &WriterSchema,
    body: &[u8],
    reader: Option<&Schema>,
) -> Result<Value, SerdeError> {
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
