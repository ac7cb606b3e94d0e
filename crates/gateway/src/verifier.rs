//! One source's verifier: built once from its configuration, then asked about each request.

use std::{
    borrow::Cow,
    fmt,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::{
    config::{ConfigError, Problem, Scheme, SourceConfig, DEFAULT_MAX_BODY_BYTES},
    headers::Headers,
    rejection::Rejection,
    schemes::{
        github::GitHub, hmac::GenericHmac, standard_webhooks::StandardWebhooks, stripe::Stripe,
        wechatpay::WechatPay, Settings,
    },
};

/// Verifies one source's requests; built by [`Verifier::from_config`] at start-up, so that a key
/// that cannot be used stops the gateway then rather than rejecting every callback later.
pub struct Verifier {
    source: String,
    max_body_bytes: usize,
    scheme: Kind,
}

enum Kind {
    StandardWebhooks(StandardWebhooks),
    Stripe(Stripe),
    GitHub(GitHub),
    WechatPay(WechatPay),
    Hmac(GenericHmac),
    None,
}

impl Verifier {
    /// Checks `config` (every secret decodes, every key and certificate parses, no key that the
    /// scheme does not use) and prepares its keys for verifying `source`'s requests.
    pub fn from_config(source: &str, config: &SourceConfig) -> Result<Self, ConfigError> {
        let settings = Settings::new(source, config)?;
        let max_body_bytes = match config.max_body_bytes {
            Some(0) => return Err(ConfigError::new(source, "max_body_bytes", Problem::Zero)),
            Some(limit) => limit,
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let scheme = match config.verify {
            Scheme::StandardWebhooks => Kind::StandardWebhooks(StandardWebhooks::new(&settings)?),
            Scheme::Stripe => Kind::Stripe(Stripe::new(&settings)?),
            Scheme::GitHub => Kind::GitHub(GitHub::new(&settings)?),
            Scheme::WechatPayV3 => Kind::WechatPay(WechatPay::new(&settings)?),
            Scheme::Hmac => Kind::Hmac(GenericHmac::new(&settings)?),
            Scheme::None => Kind::None,
        };
        Ok(Self { source: source.to_owned(), max_body_bytes, scheme })
    }

    /// Verifies a request from its headers and raw body, as received: not a byte re-encoded.
    ///
    /// `now` is the time the timestamp is checked against (the gateway passes the wall clock;
    /// tests pass what they need). Signatures are checked before the timestamp, so that
    /// [`Rejection::StaleTimestamp`] means a genuine request out of its window (a replay, or a
    /// clock off), never a forgery.
    pub fn verify<'b, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &'b [u8],
        now: SystemTime,
    ) -> Result<Verified<'b>, Rejection> {
        if body.len() > self.max_body_bytes {
            return Err(Rejection::BodyTooLarge { limit: self.max_body_bytes, actual: body.len() });
        }
        let now = unix_seconds(now);
        match &self.scheme {
            Kind::StandardWebhooks(scheme) => scheme.verify(headers, body, now),
            Kind::Stripe(scheme) => scheme.verify(headers, body, now),
            Kind::GitHub(scheme) => scheme.verify(headers, body),
            Kind::WechatPay(scheme) => scheme.verify(headers, body, now),
            Kind::Hmac(scheme) => scheme.verify(headers, body, now),
            Kind::None => Ok(Verified::signed(body, None)),
        }
    }

    /// The source's scheme.
    pub fn scheme(&self) -> Scheme {
        match self.scheme {
            Kind::StandardWebhooks(_) => Scheme::StandardWebhooks,
            Kind::Stripe(_) => Scheme::Stripe,
            Kind::GitHub(_) => Scheme::GitHub,
            Kind::WechatPay(_) => Scheme::WechatPayV3,
            Kind::Hmac(_) => Scheme::Hmac,
            Kind::None => Scheme::None,
        }
    }

    /// The largest body the source accepts, for the HTTP layer to stop reading at.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The source's name.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for Verifier {
    // By hand: the keys inside must never print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("source", &self.source)
            .field("scheme", &self.scheme())
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

/// A request that passed verification.
#[derive(Clone)]
pub struct Verified<'b> {
    body: Cow<'b, [u8]>,
    signed_body: &'b [u8],
    timestamp: Option<i64>,
}

impl<'b> Verified<'b> {
    pub(crate) fn signed(body: &'b [u8], timestamp: Option<i64>) -> Self {
        Self { body: Cow::Borrowed(body), signed_body: body, timestamp }
    }

    pub(crate) fn decrypted(signed_body: &'b [u8], plaintext: Vec<u8>, timestamp: i64) -> Self {
        Self { body: Cow::Owned(plaintext), signed_body, timestamp: Some(timestamp) }
    }

    /// The body to publish: the request's body, or for WeChat Pay the decrypted resource (the
    /// transaction or refund JSON).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body to publish, owned or borrowed from the request.
    pub fn into_body(self) -> Cow<'b, [u8]> {
        self.body
    }

    /// The request's body as signed; for WeChat Pay the notification around the encrypted
    /// resource, with its `id` and `event_type`.
    pub fn signed_body(&self) -> &'b [u8] {
        self.signed_body
    }

    /// The signed Unix timestamp in seconds, for schemes that sign one.
    pub fn timestamp(&self) -> Option<i64> {
        self.timestamp
    }

    /// Whether [`body`](Self::body) was decrypted from the request (WeChat Pay).
    pub fn was_decrypted(&self) -> bool {
        matches!(self.body, Cow::Owned(_))
    }
}

impl fmt::Debug for Verified<'_> {
    // Sizes only: a decrypted payment result is nobody's log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("body_bytes", &self.body.len())
            .field("signed_body_bytes", &self.signed_body.len())
            .field("decrypted", &self.was_decrypted())
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

fn unix_seconds(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |secs| -secs),
    }
}
