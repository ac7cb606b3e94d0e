//! Generic HMAC, for providers with a scheme of their own: a configured payload (the body, or a
//! template of the body, a timestamp and body fields) signed with HMAC-SHA256 or -SHA512, the
//! signature in a header or a body field, hex or base64, behind an optional prefix.

use std::borrow::Cow;

use serde_json::Value;

use super::{check_window, mac::Key, parse_timestamp, required, Settings};
use crate::{
    config::{ConfigError, Problem, SecretEncoding, SignatureEncoding},
    encoding::{config_base64, config_hex, signature_base64, signature_hex, MAX_SIGNATURE},
    headers::Headers,
    rejection::Rejection,
    verifier::Verified,
};

pub(crate) struct GenericHmac {
    keys: Vec<Key>,
    signature: Location,
    encoding: SignatureEncoding,
    prefix: Vec<u8>,
    timestamp: Option<Location>,
    payload: Vec<Part>,
    /// Whether anything is read from the body's JSON, so that it is parsed only then.
    reads_json: bool,
    tolerance: u64,
}

/// Where a value is found.
enum Location {
    /// A header, lowercase.
    Header(Cow<'static, str>),
    /// A field of the body's JSON, as a JSON pointer.
    Field(String),
}

/// A piece of the signed payload.
#[derive(Debug, PartialEq)]
enum Part {
    Literal(Vec<u8>),
    Body,
    Timestamp,
    Field(String),
}

impl GenericHmac {
    pub(crate) fn new(settings: &Settings<'_>) -> Result<Self, ConfigError> {
        let config = settings.config;
        let algorithm = config.algorithm.unwrap_or_default();
        let encoding = config.secret_encoding.unwrap_or_default();
        let keys = settings
            .required_list("secrets", &config.secrets)?
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let key = format!("secrets[{i}]");
                let bytes = match encoding {
                    SecretEncoding::Raw => Ok(secret.expose().as_bytes().to_vec()),
                    SecretEncoding::Base64 => config_base64(secret.expose()),
                    SecretEncoding::Hex => config_hex(secret.expose()),
                }
                .map_err(|problem| settings.error(&key, problem))?;
                if bytes.is_empty() {
                    return Err(settings.error(&key, Problem::Empty));
                }
                Ok(Key::new(algorithm, &bytes))
            })
            .collect::<Result<_, _>>()?;

        let signature = location(
            settings,
            ("signature_header", &config.signature_header),
            ("signature_field", &config.signature_field),
        )?
        .ok_or_else(|| settings.error("signature_header", Problem::Missing { scheme: config.verify }))?;
        let timestamp = location(
            settings,
            ("timestamp_header", &config.timestamp_header),
            ("timestamp_field", &config.timestamp_field),
        )?;
        if timestamp.is_none() && config.tolerance_secs.is_some() {
            // A tolerance with nothing to apply it to would promise a replay protection it does not give.
            return Err(settings.error(
                "tolerance_secs",
                Problem::Invalid("applies only with timestamp_header or timestamp_field"),
            ));
        }

        let template = match (&config.signed_payload, &signature) {
            (Some(template), _) => template.as_str(),
            (None, Location::Header(_)) => "{body}",
            (None, Location::Field(_)) => {
                return Err(settings.error("signed_payload", Problem::Missing { scheme: config.verify }));
            }
        };
        let payload =
            parse_template(template).map_err(|problem| settings.error("signed_payload", problem))?;
        check_payload(&payload, &signature, timestamp.as_ref())
            .map_err(|problem| settings.error("signed_payload", problem))?;

        let reads_json = matches!(signature, Location::Field(_))
            || matches!(timestamp, Some(Location::Field(_)))
            || payload.iter().any(|part| matches!(part, Part::Field(_)));
        Ok(Self {
            keys,
            signature,
            encoding: config.signature_encoding.unwrap_or_default(),
            prefix: config.signature_prefix.clone().unwrap_or_default().into_bytes(),
            timestamp,
            payload,
            reads_json,
            tolerance: settings.tolerance(),
        })
    }

    pub(crate) fn verify<'b, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &'b [u8],
        now: i64,
    ) -> Result<Verified<'b>, Rejection> {
        let json = if self.reads_json {
            Some(serde_json::from_slice::<Value>(body).map_err(|_| Rejection::malformed_body("not JSON"))?)
        } else {
            None
        };
        let signature_text = find(&self.signature, headers, json.as_ref())?;
        let encoded = signature_text
            .strip_prefix(self.prefix.as_slice())
            .ok_or_else(|| malformed(&self.signature, "no signature prefix"))?;
        let mut buffer = [0; MAX_SIGNATURE];
        let signature = match self.encoding {
            SignatureEncoding::Hex => signature_hex(encoded, &mut buffer),
            SignatureEncoding::Base64 => signature_base64(encoded, &mut buffer),
        }
        .ok_or_else(|| malformed(&self.signature, "the signature is not in the configured encoding"))?;

        let timestamp = match &self.timestamp {
            Some(location) => {
                let text = find(location, headers, json.as_ref())?;
                let timestamp = parse_timestamp(&text)
                    .ok_or_else(|| malformed(location, "not a Unix time in seconds"))?;
                Some((text, timestamp))
            }
            None => None,
        };
        let mut parts: Vec<Cow<'_, [u8]>> = Vec::with_capacity(self.payload.len());
        for part in &self.payload {
            parts.push(match part {
                Part::Literal(text) => Cow::Borrowed(text.as_slice()),
                Part::Body => Cow::Borrowed(body),
                Part::Timestamp => match &timestamp {
                    Some((text, _)) => Cow::Borrowed(text.as_ref()),
                    // The configuration check makes {timestamp} need a timestamp location.
                    None => return Err(Rejection::BadSignature),
                },
                Part::Field(pointer) => field(json.as_ref(), pointer)?,
            });
        }
        let parts: Vec<&[u8]> = parts.iter().map(AsRef::as_ref).collect();
        if !self.keys.iter().any(|key| key.tag(&parts).matches(signature)) {
            return Err(Rejection::BadSignature);
        }
        let timestamp = timestamp.map(|(_, timestamp)| timestamp);
        if let Some(timestamp) = timestamp {
            check_window(timestamp, now, self.tolerance)?;
        }
        Ok(Verified::signed(body, timestamp))
    }
}

/// The value at `location`: a header's bytes, or a body field's text.
fn find<'a, H: Headers + ?Sized>(
    location: &Location,
    headers: &'a H,
    json: Option<&'a Value>,
) -> Result<Cow<'a, [u8]>, Rejection> {
    match location {
        Location::Header(name) => required(headers, name).map(Cow::Borrowed),
        Location::Field(pointer) => field(json, pointer),
    }
}

/// A body field as text: a string's contents, or a number as JSON writes it.
fn field<'a>(json: Option<&'a Value>, pointer: &str) -> Result<Cow<'a, [u8]>, Rejection> {
    match json.and_then(|json| json.pointer(pointer)) {
        Some(Value::String(text)) => Ok(Cow::Borrowed(text.as_bytes())),
        Some(Value::Number(number)) => Ok(Cow::Owned(number.to_string().into_bytes())),
        Some(_) => Err(Rejection::MalformedBody {
            reason: Cow::Owned(format!("field {pointer} is not a string or a number")),
        }),
        None => Err(Rejection::MalformedBody { reason: Cow::Owned(format!("no field {pointer}")) }),
    }
}

fn malformed(location: &Location, reason: &'static str) -> Rejection {
    match location {
        Location::Header(name) => Rejection::MalformedHeader { header: name.clone(), reason },
        Location::Field(pointer) => {
            Rejection::MalformedBody { reason: Cow::Owned(format!("field {pointer}: {reason}")) }
        }
    }
}

/// The location one of two exclusive keys gives: a header (stored lowercase) or a JSON pointer.
fn location(
    settings: &Settings<'_>,
    (header_key, header): (&'static str, &Option<String>),
    (field_key, field): (&'static str, &Option<String>),
) -> Result<Option<Location>, ConfigError> {
    match (header, field) {
        (Some(_), Some(_)) => Err(settings.error(field_key, Problem::Conflict { other: header_key })),
        (Some(name), None) => {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(settings.error(header_key, Problem::Invalid("not a valid header name")));
            }
            Ok(Some(Location::Header(Cow::Owned(name.to_ascii_lowercase()))))
        }
        (None, Some(pointer)) => {
            if !pointer.starts_with('/') {
                return Err(settings.error(field_key, Problem::Pointer { pointer: pointer.clone() }));
            }
            Ok(Some(Location::Field(pointer.clone())))
        }
        (None, None) => Ok(None),
    }
}

/// `signed_payload`: literal text and `{body}`, `{timestamp}`, `{field:/pointer}`.
fn parse_template(template: &str) -> Result<Vec<Part>, Problem> {
    let mut parts = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let next = rest.find(['{', '}']).unwrap_or(rest.len());
        if next > 0 {
            parts.push(Part::Literal(rest.as_bytes()[..next].to_vec()));
            rest = &rest[next..];
            continue;
        }
        if rest.starts_with('}') {
            return Err(Problem::Invalid("a `}` that closes nothing"));
        }
        let end = rest.find('}').ok_or(Problem::Invalid("a `{` that is never closed"))?;
        parts.push(match &rest[1..end] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            placeholder => match placeholder.strip_prefix("field:") {
                Some(pointer) if pointer.starts_with('/') => Part::Field(pointer.to_owned()),
                _ => {
                    return Err(Problem::Invalid(
                        "placeholders are {body}, {timestamp} and {field:/json/pointer}",
                    ))
                }
            },
        });
        rest = &rest[end + 1..];
    }
    Ok(parts)
}

/// Refuses payloads that would not protect what they seem to: the body signed with a signature
/// that is in the body, a timestamp that is checked but not signed, nothing from the request.
fn check_payload(
    payload: &[Part],
    signature: &Location,
    timestamp: Option<&Location>,
) -> Result<(), Problem> {
    let has_body = payload.contains(&Part::Body);
    if payload.iter().filter(|part| **part == Part::Body).count() > 1 {
        return Err(Problem::Invalid("{body} appears more than once"));
    }
    if has_body && matches!(signature, Location::Field(_)) {
        return Err(Problem::Invalid(
            "{body} cannot be signed when the signature is in the body (signature_field); sign {field:...}s",
        ));
    }
    if !has_body && !payload.iter().any(|part| matches!(part, Part::Field(_))) {
        return Err(Problem::Invalid("signs nothing from the request's body"));
    }
    let timestamp_signed = match timestamp {
        None => !payload.contains(&Part::Timestamp),
        Some(Location::Header(_)) => payload.contains(&Part::Timestamp),
        Some(Location::Field(pointer)) => {
            has_body
                || payload
                    .iter()
                    .any(|part| *part == Part::Timestamp || *part == Part::Field(pointer.clone()))
        }
    };
    match (timestamp, timestamp_signed) {
        (None, false) => Err(Problem::Invalid("{timestamp} needs timestamp_header or timestamp_field")),
        (Some(_), false) => Err(Problem::Invalid("the timestamp is checked but not signed: add {timestamp}")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse_into_parts() {
        assert_eq!(
            parse_template("v0:{timestamp}:{body}").unwrap(),
            [Part::Literal(b"v0:".to_vec()), Part::Timestamp, Part::Literal(b":".to_vec()), Part::Body]
        );
        assert_eq!(
            parse_template("{field:/a/b}{field:/c}").unwrap(),
            [Part::Field("/a/b".into()), Part::Field("/c".into())]
        );
        for bad in ["{body", "body}", "{nobody}", "{field:a}", "{}"] {
            assert!(parse_template(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn payloads_that_protect_nothing_are_refused() {
        let header = Location::Header(Cow::Borrowed("x-sig"));
        let field = Location::Field("/sig".into());
        let ts_header = Location::Header(Cow::Borrowed("x-ts"));
        let ts_field = Location::Field("/ts".into());
        let check = |template: &str, signature: &Location, timestamp: Option<&Location>| {
            check_payload(&parse_template(template).unwrap(), signature, timestamp)
        };
        assert!(check("{body}", &header, None).is_ok());
        assert!(check("{timestamp}.{body}", &header, Some(&ts_header)).is_ok());
        assert!(check("{body}", &header, Some(&ts_field)).is_ok(), "the body carries the timestamp");
        assert!(check("{field:/ts}{field:/token}", &field, Some(&ts_field)).is_ok());
        assert!(check("{body}", &field, None).is_err());
        assert!(check("{body}", &header, Some(&ts_header)).is_err());
        assert!(check("{timestamp}.{body}", &header, None).is_err());
        assert!(check("constant", &header, None).is_err());
        assert!(check("{body}{body}", &header, None).is_err());
    }
}
