//! Base64 and hex as the schemes write keys and signatures.
//!
//! Decoding errors are described by offset only: base64's and hex's own messages quote the
//! offending character, which in a secret is part of the secret.

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    DecodeError, Engine,
};

use crate::config::Problem;

/// Standard base64, padded or not (providers write both: Standard Webhooks' Python library pads
/// a `whsec_` secret before decoding it), but canonical: trailing bits must be zero, so one
/// signature has one spelling.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes a key or secret from the configuration.
pub(crate) fn config_base64(text: &str) -> Result<Vec<u8>, Problem> {
    BASE64.decode(text).map_err(|error| Problem::Encoding { encoding: "base64", reason: describe(&error) })
}

/// Decodes a hexadecimal key or secret from the configuration.
pub(crate) fn config_hex(text: &str) -> Result<Vec<u8>, Problem> {
    hex::decode(text).map_err(|error| {
        let reason = match error {
            hex::FromHexError::InvalidHexCharacter { index, .. } => {
                format!("invalid character at offset {index}")
            }
            hex::FromHexError::OddLength => "an odd number of digits".to_owned(),
            hex::FromHexError::InvalidStringLength => "invalid length".to_owned(),
        };
        Problem::Encoding { encoding: "hex", reason }
    })
}

fn describe(error: &DecodeError) -> String {
    match error {
        DecodeError::InvalidByte(offset, _) => format!("invalid character at offset {offset}"),
        DecodeError::InvalidLength(length) => format!("invalid length {length}"),
        DecodeError::InvalidLastSymbol(offset, _) => {
            format!("invalid last character at offset {offset}")
        }
        DecodeError::InvalidPadding => "invalid padding".to_owned(),
    }
}

/// The longest signature decoded on the stack: SHA-512 and Ed25519 are 64 bytes; anything
/// longer is no signature these schemes make (RSA signatures go through [`BASE64`] directly).
pub(crate) const MAX_SIGNATURE: usize = 64;

/// Decodes a base64 signature from a request into `out`; `None` when it is not canonical base64
/// or longer than `out`.
pub(crate) fn signature_base64<'o>(text: &[u8], out: &'o mut [u8; MAX_SIGNATURE]) -> Option<&'o [u8]> {
    // A longer text cannot fit, and decode_slice would have to look at all of it to say so.
    if text.len() > MAX_SIGNATURE.div_ceil(3) * 4 {
        return None;
    }
    let written = BASE64.decode_slice(text, out).ok()?;
    Some(&out[..written])
}

/// Decodes a hexadecimal signature (either case) from a request into `out`; `None` when it is
/// not hex or longer than `out`.
pub(crate) fn signature_hex<'o>(text: &[u8], out: &'o mut [u8; MAX_SIGNATURE]) -> Option<&'o [u8]> {
    if !text.len().is_multiple_of(2) || text.len() > 2 * MAX_SIGNATURE {
        return None;
    }
    let out = &mut out[..text.len() / 2];
    hex::decode_to_slice(text, out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_optional_but_trailing_bits_must_be_zero() {
        assert_eq!(config_base64("aGk=").unwrap(), b"hi");
        assert_eq!(config_base64("aGk").unwrap(), b"hi");
        assert!(config_base64("aGl=").is_err(), "non-canonical: the last character carries a 1 bit");
    }

    #[test]
    fn errors_name_the_offset_not_the_character() {
        let Problem::Encoding { reason, .. } = config_base64("abc!defg").unwrap_err() else {
            panic!("not an encoding problem");
        };
        assert_eq!(reason, "invalid character at offset 3");
        let Problem::Encoding { reason, .. } = config_hex("00zz").unwrap_err() else {
            panic!("not an encoding problem");
        };
        assert!(!reason.contains('z'), "{reason}");
    }

    #[test]
    fn signatures_longer_than_the_buffer_are_refused() {
        let mut out = [0; MAX_SIGNATURE];
        let long = BASE64.encode([7u8; MAX_SIGNATURE + 1]);
        assert_eq!(signature_base64(long.as_bytes(), &mut out), None);
        let fits = BASE64.encode([7u8; MAX_SIGNATURE]);
        assert_eq!(signature_base64(fits.as_bytes(), &mut out), Some(&[7u8; MAX_SIGNATURE][..]));
        assert_eq!(signature_hex(b"0aFF", &mut out), Some(&[10u8, 255][..]));
        assert_eq!(signature_hex(b"0aF", &mut out), None);
    }
}
