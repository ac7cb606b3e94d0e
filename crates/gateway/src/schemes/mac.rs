//! HMAC keys prepared once, and tags compared in constant time.

use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::{config::HmacAlgorithm, encoding::MAX_SIGNATURE};

/// An HMAC key with its inner and outer pads already hashed: cloning it per request is cheaper
/// than deriving it from the secret again.
#[derive(Clone)]
pub(crate) enum Key {
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl Key {
    pub(crate) fn new(algorithm: HmacAlgorithm, secret: &[u8]) -> Self {
        // HMAC takes a key of any length (a long one is hashed first), so these cannot fail.
        match algorithm {
            HmacAlgorithm::Sha256 => {
                Key::Sha256(<Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()))
            }
            HmacAlgorithm::Sha512 => {
                Key::Sha512(<Hmac<Sha512> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()))
            }
        }
    }

    /// The tag of the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> Tag {
        let mut tag = Tag { bytes: [0; MAX_SIGNATURE], len: 0 };
        match self {
            Key::Sha256(key) => {
                let mut mac = key.clone();
                parts.iter().for_each(|part| mac.update(part));
                let out = mac.finalize().into_bytes();
                tag.bytes[..out.len()].copy_from_slice(&out);
                tag.len = out.len();
            }
            Key::Sha512(key) => {
                let mut mac = key.clone();
                parts.iter().for_each(|part| mac.update(part));
                let out = mac.finalize().into_bytes();
                tag.bytes[..out.len()].copy_from_slice(&out);
                tag.len = out.len();
            }
        }
        tag
    }
}

/// A computed HMAC tag.
pub(crate) struct Tag {
    bytes: [u8; MAX_SIGNATURE],
    len: usize,
}

impl Tag {
    /// Whether `signature` is this tag, compared in constant time (a length that differs is
    /// no secret: every scheme's tag length is public).
    pub(crate) fn matches(&self, signature: &[u8]) -> bool {
        self.bytes[..self.len].ct_eq(signature).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_parts_are_tags_of_the_whole_and_compare_exactly() {
        // RFC 4231 test case 2.
        let key = Key::new(HmacAlgorithm::Sha256, b"Jefe");
        let tag = key.tag(&[b"what do ya want ", b"for nothing?"]);
        let expected =
            hex::decode("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843").unwrap();
        assert!(tag.matches(&expected));
        assert!(!tag.matches(&expected[..31]));
        let mut flipped = expected.clone();
        flipped[31] ^= 1;
        assert!(!tag.matches(&flipped));

        let key = Key::new(HmacAlgorithm::Sha512, b"Jefe");
        let expected = hex::decode(
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        )
        .unwrap();
        assert!(key.tag(&[b"what do ya want for nothing?"]).matches(&expected));
    }
}
