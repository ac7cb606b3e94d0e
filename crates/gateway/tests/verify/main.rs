//! Every scheme against valid requests and against forged, replayed, stale, truncated,
//! oversized and wrongly encoded ones, with its own and with generated inputs.
//!
//! Each scheme's module implements [`Scheme`]: how a genuine provider signs a request. The
//! property tests then sign a random body genuinely, check that it is accepted (so that the
//! attacks below start from something that works), and apply one [`Attack`]: none may be
//! accepted.

mod fuzz;
mod github;
mod hmac;
mod http;
mod none;
mod standard_webhooks;
mod stripe;
mod wechatpay;

use std::time::{Duration, SystemTime};

use fanout_gateway::{Rejection, SourceConfig, Verified, Verifier};
use proptest::{prelude::*, test_runner::TestCaseError};

/// The time every test request is verified at.
pub const NOW: i64 = 1_764_000_000;

/// The body size limit every test source is configured with.
pub const LIMIT: usize = 4096;

pub fn at(unix_seconds: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix_seconds.try_into().unwrap())
}

/// A verifier for the source whose config is `toml` (as the gateway's file would have it under
/// `[sources.test]`).
pub fn verifier(toml: &str) -> Verifier {
    let config: SourceConfig = fanout_config::from_toml_str(toml).unwrap();
    Verifier::from_config("test", &config).unwrap()
}

/// A request as it reaches the verifier.
#[derive(Debug, Clone)]
pub struct Request {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(headers: &[(&str, &str)], body: &[u8]) -> Self {
        let headers = headers.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        Self { headers, body: body.to_vec() }
    }

    pub fn verify<'a>(&'a self, verifier: &Verifier, now: i64) -> Result<Verified<'a>, Rejection> {
        verifier.verify(&self.headers, &self.body, at(now))
    }

    /// The value of the header `name`.
    pub fn header(&self, name: &str) -> &str {
        &self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).unwrap().1
    }

    /// The same request with the header `name` set to `value`.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        match self.headers.iter_mut().find(|(key, _)| key.eq_ignore_ascii_case(name)) {
            Some(entry) => entry.1 = value,
            None => self.headers.push((name.to_owned(), value)),
        }
        self
    }
}

/// A scheme as the HTTP suite runs it: its source's config and how its provider signs.
pub struct HttpScheme {
    /// The source's name.
    pub name: &'static str,
    /// The source's verification keys, as under `[sources.NAME]`.
    pub toml: String,
    /// The provider.
    pub scheme: Box<dyn Scheme + Send + Sync>,
}

impl std::fmt::Debug for HttpScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpScheme").field("name", &self.name).finish_non_exhaustive()
    }
}

impl HttpScheme {
    pub fn new(name: &'static str, toml: String, scheme: impl Scheme + Send + Sync + 'static) -> Self {
        Self { name, toml, scheme: Box::new(scheme) }
    }
}

/// Who signs a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Signer {
    /// The provider, with the key the source has (the newest of its keys).
    Current,
    /// The provider with a key it used before and the source no longer has.
    Retired,
    /// Someone else, with a key made from these bytes.
    Stranger([u8; 32]),
}

/// How a genuine provider of one scheme signs, and what a request of that scheme looks like.
pub trait Scheme {
    /// The verifier under test: it has the [`Signer::Current`] key, not the retired one, a
    /// tolerance of 300 s where the scheme signs a timestamp and a body limit of [`LIMIT`].
    fn verifier(&self) -> &Verifier;
    /// Whether requests carry a signed timestamp.
    fn has_timestamp(&self) -> bool;
    /// A request with `body` signed at `timestamp` by `signer`.
    fn sign(&self, body: &[u8], timestamp: i64, signer: &Signer) -> Request;
    /// `valid` with its signature replaced by `random`, written as the scheme writes signatures.
    fn forge(&self, valid: &Request, random: &[u8]) -> Request;
    /// `valid` with its genuine signature written in an encoding the scheme does not use.
    fn misencode(&self, valid: &Request) -> Request;
}

#[derive(Debug, Clone)]
pub enum Attack {
    Forged(Vec<u8>),
    ChangedBody { at: usize, xor: u8 },
    AppendedBody(Vec<u8>),
    TruncatedBody { keep: usize },
    Stale { beyond: i64 },
    Future { beyond: i64 },
    Oversized,
    WrongEncoding,
    RemovedHeader(usize),
    DuplicatedHeader(usize),
    ChangedHeader { header: usize, at: usize, to: char },
    TruncatedHeader { header: usize, keep: usize },
    WrongSecret([u8; 32]),
    RotatedOut,
}

pub fn attacks() -> impl Strategy<Value = Attack> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80).prop_map(Attack::Forged),
        (any::<usize>(), 1..=255u8).prop_map(|(at, xor)| Attack::ChangedBody { at, xor }),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Attack::AppendedBody),
        any::<usize>().prop_map(|keep| Attack::TruncatedBody { keep }),
        (1..1_000_000i64).prop_map(|beyond| Attack::Stale { beyond }),
        (1..1_000_000i64).prop_map(|beyond| Attack::Future { beyond }),
        Just(Attack::Oversized),
        Just(Attack::WrongEncoding),
        any::<usize>().prop_map(Attack::RemovedHeader),
        any::<usize>().prop_map(Attack::DuplicatedHeader),
        (any::<usize>(), any::<usize>(), proptest::char::range('!', '~'))
            .prop_map(|(header, at, to)| Attack::ChangedHeader { header, at, to }),
        (any::<usize>(), any::<usize>()).prop_map(|(header, keep)| Attack::TruncatedHeader { header, keep }),
        any::<[u8; 32]>().prop_map(Attack::WrongSecret),
        Just(Attack::RotatedOut),
    ]
}

/// Bodies as providers send them: JSON with arbitrary text inside, up to a few hundred bytes.
pub fn bodies() -> impl Strategy<Value = Vec<u8>> {
    ("[ -~]{0,200}", any::<u32>()).prop_map(|(text, n)| {
        serde_json::json!({"id": format!("evt_{n}"), "note": text}).to_string().into_bytes()
    })
}

/// `attack` applied to a genuine request of `scheme` for `body`; `None` where it does not apply
/// to the scheme (a stale timestamp where none is signed) or changes nothing.
pub fn attacked(
    scheme: &(impl Scheme + ?Sized),
    valid: &Request,
    body: &[u8],
    attack: &Attack,
    now: i64,
) -> Option<Request> {
    let mut request = valid.clone();
    match attack {
        Attack::Forged(random) => return Some(scheme.forge(valid, random)),
        Attack::ChangedBody { at, xor } => {
            let at = at % request.body.len().max(1);
            *request.body.get_mut(at)? ^= xor;
        }
        Attack::AppendedBody(extra) => request.body.extend_from_slice(extra),
        Attack::TruncatedBody { keep } => request.body.truncate(keep % request.body.len().max(1)),
        Attack::Stale { beyond } | Attack::Future { beyond } if !scheme.has_timestamp() => {
            let _ = beyond;
            return None;
        }
        Attack::Stale { beyond } => return Some(scheme.sign(body, now - 300 - beyond, &Signer::Current)),
        Attack::Future { beyond } => return Some(scheme.sign(body, now + 300 + beyond, &Signer::Current)),
        Attack::Oversized => return Some(scheme.sign(&vec![b'x'; LIMIT + 1], now, &Signer::Current)),
        Attack::WrongEncoding => return Some(scheme.misencode(valid)),
        Attack::RemovedHeader(i) => {
            request.headers.remove(i % request.headers.len());
        }
        Attack::DuplicatedHeader(i) => {
            let (name, value) = request.headers[i % request.headers.len()].clone();
            request.headers.push((name, format!("{value}0")));
        }
        Attack::ChangedHeader { header, at, to } => {
            let (_, value) = &mut request.headers[header % valid.headers.len()];
            let at = at % value.len();
            let old = value[at..].chars().next()?;
            // Hex digits and serial numbers are read in either case: a case change is no change.
            if old.eq_ignore_ascii_case(to) {
                return None;
            }
            value.replace_range(at..at + old.len_utf8(), &to.to_string());
        }
        Attack::TruncatedHeader { header, keep } => {
            let (_, value) = &mut request.headers[header % valid.headers.len()];
            let keep = keep % value.len();
            // Base64 padding is optional (providers differ): without it the signature is the same.
            if value[keep..].bytes().all(|byte| byte == b'=') {
                return None;
            }
            value.truncate(keep);
        }
        Attack::WrongSecret(key) => return Some(scheme.sign(body, now, &Signer::Stranger(*key))),
        Attack::RotatedOut => return Some(scheme.sign(body, now, &Signer::Retired)),
    }
    Some(request)
}

/// The property every scheme's suite checks: `body` signed genuinely is accepted, and with
/// `attack` applied it is rejected, for the reason the attack implies where it implies one.
pub fn genuine_accepted_attacked_rejected(
    scheme: &impl Scheme,
    body: &[u8],
    attack: &Attack,
) -> Result<(), TestCaseError> {
    let verifier = scheme.verifier();
    let valid = scheme.sign(body, NOW, &Signer::Current);
    if let Err(rejection) = valid.verify(verifier, NOW) {
        return Err(TestCaseError::fail(format!("a genuine request was rejected: {rejection}")));
    }
    let Some(request) = attacked(scheme, &valid, body, attack, NOW) else {
        return Ok(());
    };
    match request.verify(verifier, NOW) {
        Ok(_) => Err(TestCaseError::fail(format!("accepted after {attack:?}: {request:?}"))),
        Err(rejection) => {
            let expected = match attack {
                Attack::Stale { .. } | Attack::Future { .. } => Some("stale_timestamp"),
                Attack::Oversized => Some("body_too_large"),
                Attack::ChangedBody { .. } | Attack::AppendedBody(_) | Attack::TruncatedBody { .. } => {
                    Some("bad_signature")
                }
                _ => None,
            };
            if let Some(expected) = expected {
                prop_assert_eq!(rejection.kind(), expected, "{:?}: {}", attack, rejection);
            }
            Ok(())
        }
    }
}

/// The cases each scheme's property runs: enough for every attack many times over, few enough
/// for the whole suite to stay within seconds.
pub fn cases() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() }
}
