//! The request headers a verifier reads, from whatever the HTTP layer holds them in.

/// A header as a verifier sees it: absent, present once, or repeated.
///
/// A repeated signature or timestamp header is refused rather than resolved: a proxy in front of
/// the gateway may have picked the other one, and an attacker may have added it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header<'a> {
    /// Not in the request.
    Absent,
    /// Exactly once, with this value.
    Once(&'a [u8]),
    /// More than once.
    Repeated,
}

/// Request headers, looked up by name.
///
/// Implemented for `http::HeaderMap` (what the gateway's HTTP server has) and for slices of
/// `(name, value)` pairs (tests, and anything else).
pub trait Headers {
    /// The header `name`, given in lowercase ASCII, matched case-insensitively.
    fn header(&self, name: &str) -> Header<'_>;
}

impl Headers for http::HeaderMap {
    fn header(&self, name: &str) -> Header<'_> {
        let mut values = self.get_all(name).iter();
        match (values.next(), values.next()) {
            (None, _) => Header::Absent,
            (Some(value), None) => Header::Once(value.as_bytes()),
            (Some(_), Some(_)) => Header::Repeated,
        }
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for [(K, V)] {
    fn header(&self, name: &str) -> Header<'_> {
        let mut found = Header::Absent;
        for (key, value) in self {
            if key.as_ref().eq_ignore_ascii_case(name) {
                if found != Header::Absent {
                    return Header::Repeated;
                }
                found = Header::Once(value.as_ref());
            }
        }
        found
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(K, V)> {
    fn header(&self, name: &str) -> Header<'_> {
        self.as_slice().header(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_match_names_case_insensitively_and_see_repeats() {
        let headers = [("Webhook-Id", "a"), ("webhook-signature", "x"), ("WEBHOOK-SIGNATURE", "y")];
        assert_eq!(headers[..].header("webhook-id"), Header::Once(b"a"));
        assert_eq!(headers[..].header("webhook-signature"), Header::Repeated);
        assert_eq!(headers[..].header("webhook-timestamp"), Header::Absent);
    }

    #[test]
    fn a_header_map_sees_repeats() {
        let mut map = http::HeaderMap::new();
        map.append("Stripe-Signature", http::HeaderValue::from_static("t=1,v1=aa"));
        assert_eq!(map.header("stripe-signature"), Header::Once(b"t=1,v1=aa"));
        map.append("stripe-signature", http::HeaderValue::from_static("t=2,v1=bb"));
        assert_eq!(map.header("stripe-signature"), Header::Repeated);
        assert_eq!(map.header("x-hub-signature-256"), Header::Absent);
    }
}
