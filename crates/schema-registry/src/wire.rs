//! The Confluent wire format's framing: byte 0 is the magic byte 0, bytes 1–4 the schema id
//! (big-endian), then the Avro binary datum.

/// The first byte of every Confluent-framed payload.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_LEN: usize = 5;

/// A payload that is not Confluent-framed.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer than five bytes: there is no room for the header.
    #[error("payload of {len} bytes is too short for the Confluent wire format (5-byte header)")]
    TooShort {
        /// The payload length.
        len: usize,
    },
    /// The first byte is not 0; this is not a Confluent-framed payload (JSON, raw Avro, ...).
    #[error("payload starts with byte {found:#04x}, not the Confluent magic byte 0x00")]
    BadMagic {
        /// The first byte.
        found: u8,
    },
}

fanout_core::debug_as_report!(FrameError);

/// Splits a framed payload into its schema id and Avro body.
///
/// ```
/// let (id, body) = fanout_schema_registry::wire::split(&[0, 0, 0, 1, 2, 42]).unwrap();
/// assert_eq!((id, body), (258, &[42u8][..]));
/// ```
pub fn split(payload: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    // Check the magic byte first: a one-byte JSON payload is better reported as "not framed"
    // than as "too short".
    match payload.first() {
        None => return Err(FrameError::TooShort { len: 0 }),
        Some(&b) if b != MAGIC_BYTE => return Err(FrameError::BadMagic { found: b }),
        Some(_) => {}
    }
    match payload {
        [_, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => Err(FrameError::TooShort { len: payload.len() }),
    }
}

/// The schema id of a framed payload, or `None` if it is not framed.
pub fn schema_id(payload: &[u8]) -> Option<u32> {
    split(payload).ok().map(|(id, _)| id)
}

/// Appends the five-byte header for `id` to `out`.
pub fn write_header(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut out = Vec::new();
        write_header(0x0102_0304, &mut out);
        out.extend_from_slice(b"body");
        assert_eq!(&out[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(split(&out), Ok((0x0102_0304, &b"body"[..])));
        assert_eq!(schema_id(&out), Some(0x0102_0304));
    }

    #[test]
    fn empty_body_is_framed() {
        assert_eq!(split(&[0, 0, 0, 0, 9]), Ok((9, &[][..])));
    }

    #[test]
    fn rejects_unframed_payloads() {
        assert_eq!(split(&[]), Err(FrameError::TooShort { len: 0 }));
        assert_eq!(split(&[0, 1, 2]), Err(FrameError::TooShort { len: 3 }));
        assert_eq!(split(b"{\"a\":1}"), Err(FrameError::BadMagic { found: b'{' }));
        assert_eq!(schema_id(&[1, 0, 0, 0, 1]), None);
        let message = FrameError::BadMagic { found: 0x7b }.to_string();
        assert!(message.contains("0x7b") && message.contains("magic"), "{message}");
    }
}
