//! Arbitrary input through every verifier: requests signed by a stranger (who lacks the source's
//! secret) and by the provider, then damaged: header values mutated byte by byte (into invalid
//! UTF-8 too), repeated thousands of times over, removed, duplicated, added, emptied; bodies
//! mutated, emptied, over the limit. Each request is verified from header pairs and, where
//! `http` accepts the header, from an `http::HeaderMap` as the server holds it.
//!
//! Properties: no verifier panics; none accepts a request a stranger signed, however damaged.
//! `FANOUT_FUZZ_COUNT` sets the number of cases.

use std::sync::LazyLock;

use fanout_gateway::{Rejection, Verified, Verifier};
use fanout_testkit::fuzz::{self, Mutation};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

use super::{at, HttpScheme, Signer, LIMIT, NOW};

/// The most header bytes the gateway's HTTP server (hyper) reads: its buffer's default limit.
const MAX_HEADER: usize = 400 * 1024;

/// A request whose headers may be any bytes.
#[derive(Debug, Clone)]
struct Raw {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// One scheme's seeds: requests a stranger signed and requests its provider signed.
struct Seeds {
    scheme: HttpScheme,
    strangers: Vec<Raw>,
    genuine: Vec<Raw>,
}

static SCHEMES: LazyLock<Vec<Seeds>> = LazyLock::new(|| {
    let schemes = [
        super::github::http_schemes(),
        super::hmac::http_schemes(),
        super::standard_webhooks::http_schemes(),
        super::stripe::http_schemes(),
        super::wechatpay::http_schemes(),
    ];
    let bodies: [&[u8]; 3] =
        [br#"{"id":"evt_1","note":"hello"}"#, b"", "{\"n\":\"\u{00e9}\u{1F600}\"}".as_bytes()];
    schemes
        .into_iter()
        .flatten()
        .map(|scheme| {
            let raw = |signer: &Signer, body: &[u8], time: i64| {
                let request = scheme.scheme.sign(body, time, signer);
                let headers = request.headers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect();
                Raw { headers, body: request.body }
            };
            let mut strangers = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                // Stranger keys unlike any test key (those are made of 1s and 2s); both parities,
                // which WeChat Pay's stranger tells apart.
                for key in [[0x40 + i as u8 * 2; 32], [0x41 + i as u8 * 2; 32]] {
                    strangers.push(raw(&Signer::Stranger(key), body, NOW));
                }
                strangers.push(raw(&Signer::Retired, body, NOW - 10));
            }
            let genuine = bodies.iter().map(|body| raw(&Signer::Current, body, NOW)).collect();
            Seeds { scheme, strangers, genuine }
        })
        .collect()
});

/// One damage to a request.
#[derive(Debug, Clone)]
enum Edit {
    /// A header's value mutated.
    Value(usize, Vec<Mutation>),
    /// The body mutated.
    Body(Vec<Mutation>),
    /// A header removed.
    Remove(usize),
    /// A header sent twice, the copy mutated.
    Duplicate(usize, Vec<Mutation>),
    /// A header's name in upper case.
    Upper(usize),
    /// A header's value repeated `times` over, joined by `separator`, up to [`MAX_HEADER`].
    Huge { header: usize, times: usize, separator: u8 },
    /// A header added: one the scheme reads (named like another), or any.
    Add { like: Option<usize>, name: String, value: Vec<u8> },
    /// No headers at all.
    NoHeaders,
    /// An empty body.
    NoBody,
    /// A body one byte over the limit.
    Oversized,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<usize>(), fuzz::mutations()).prop_map(|(i, m)| Edit::Value(i, m)),
        3 => fuzz::mutations().prop_map(Edit::Body),
        1 => any::<usize>().prop_map(Edit::Remove),
        1 => (any::<usize>(), fuzz::mutations()).prop_map(|(i, m)| Edit::Duplicate(i, m)),
        1 => any::<usize>().prop_map(Edit::Upper),
        1 => (any::<usize>(), prop::sample::select(vec![2usize, 100, 3_000]), prop::sample::select(b", ;=\x00".to_vec()))
            .prop_map(|(header, times, separator)| Edit::Huge { header, times, separator }),
        2 => (
            prop::option::of(any::<usize>()),
            "[a-zA-Z-]{1,24}",
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(like, name, value)| Edit::Add { like, name, value }),
        1 => Just(Edit::NoHeaders),
        1 => Just(Edit::NoBody),
        1 => Just(Edit::Oversized),
    ]
}

fn apply(request: &mut Raw, edit: &Edit, seeds: &[Vec<u8>]) {
    let count = request.headers.len();
    let index = |i: &usize| (count > 0).then(|| i % count);
    match edit {
        Edit::Value(i, mutations) => {
            if let Some(i) = index(i) {
                mutations.iter().for_each(|m| m.apply(&mut request.headers[i].1, seeds));
            }
        }
        Edit::Body(mutations) => mutations.iter().for_each(|m| m.apply(&mut request.body, seeds)),
        Edit::Remove(i) => {
            if let Some(i) = index(i) {
                request.headers.remove(i);
            }
        }
        Edit::Duplicate(i, mutations) => {
            if let Some(i) = index(i) {
                let mut copy = request.headers[i].clone();
                mutations.iter().for_each(|m| m.apply(&mut copy.1, seeds));
                request.headers.push(copy);
            }
        }
        Edit::Upper(i) => {
            if let Some(i) = index(i) {
                request.headers[i].0.make_ascii_uppercase();
            }
        }
        Edit::Huge { header, times, separator } => {
            if let Some(i) = index(header) {
                let value = &request.headers[i].1;
                let times = (*times).min(MAX_HEADER / (value.len() + 1)).max(1);
                let mut huge = Vec::with_capacity((value.len() + 1) * times);
                for n in 0..times {
                    if n > 0 {
                        huge.push(*separator);
                    }
                    huge.extend_from_slice(value);
                }
                request.headers[i].1 = huge;
            }
        }
        Edit::Add { like, name, value } => {
            let name = match like.as_ref().and_then(index) {
                Some(i) => request.headers[i].0.clone(),
                None => name.clone(),
            };
            request.headers.push((name, value.clone()));
        }
        Edit::NoHeaders => request.headers.clear(),
        Edit::NoBody => request.body.clear(),
        Edit::Oversized => request.body.resize(LIMIT + 1, b'x'),
    }
}

/// The request as the server would hold it, where every header is one `http` accepts.
fn header_map(request: &Raw) -> Option<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (name, value) in &request.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        map.append(name, http::HeaderValue::from_bytes(value).ok()?);
    }
    Some(map)
}

/// Verifies `request` both ways; the two must agree.
fn verify(verifier: &Verifier, request: &Raw) -> Result<(), TestCaseError> {
    let from_pairs = verifier.verify(&request.headers, &request.body, at(NOW)).map(|v| summary(&v));
    if let Some(map) = header_map(request) {
        let from_map = verifier.verify(&map, &request.body, at(NOW)).map(|v| summary(&v));
        prop_assert_eq!(&from_pairs, &from_map, "pairs and header map disagree");
    }
    if let Err(rejection) = &from_pairs {
        prop_assert!(!rejection.kind().is_empty() && !rejection.to_string().is_empty());
    }
    from_pairs.map(|_| ()).map_err(|_| TestCaseError::reject("rejected"))
}

fn summary(verified: &Verified<'_>) -> (Vec<u8>, Option<i64>) {
    (verified.body().to_vec(), verified.timestamp())
}

fn run(stranger: bool) {
    let cases = (0..SCHEMES.len(), any::<usize>(), prop::collection::vec(edit(), 0..5));
    let mut runner = TestRunner::new(fuzz::config(fuzz::DEFAULT_CASES));
    runner
        .run(&cases, |(scheme, seed, edits)| {
            let seeds = &SCHEMES[scheme];
            let pool = if stranger { &seeds.strangers } else { &seeds.genuine };
            let mut request = pool[seed % pool.len()].clone();
            let splice: Vec<Vec<u8>> = request.headers.iter().map(|(_, v)| v.clone()).collect();
            for edit in &edits {
                apply(&mut request, edit, &splice);
            }
            let verifier = seeds.scheme.scheme.verifier();
            match verify(verifier, &request) {
                Ok(()) if stranger => Err(TestCaseError::fail(format!(
                    "{} accepted a stranger's request after {edits:?}: {request:?}",
                    seeds.scheme.name
                ))),
                Err(e) if !matches!(e, TestCaseError::Reject(_)) => Err(e),
                _ => Ok(()),
            }
        })
        .unwrap();
}

#[test]
fn a_strangers_request_however_damaged_is_never_accepted_and_never_panics() {
    run(true);
}

#[test]
fn a_genuine_request_damaged_never_panics() {
    run(false);
}

#[test]
fn empty_huge_and_non_utf8_headers_are_rejected() {
    for seeds in SCHEMES.iter() {
        let verifier = seeds.scheme.scheme.verifier();
        let names: Vec<String> = seeds.genuine[0].headers.iter().map(|(n, _)| n.clone()).collect();
        let empty = Raw { headers: vec![], body: vec![] };
        let blank = Raw { headers: names.iter().map(|n| (n.clone(), vec![])).collect(), body: vec![] };
        let binary = Raw {
            headers: names.iter().map(|n| (n.clone(), vec![0xff, 0xfe, b'=', 0xc3, 0x28, 0x80])).collect(),
            body: b"{}".to_vec(),
        };
        let huge =
            Raw { headers: names.iter().map(|n| (n.clone(), vec![b'9'; 1 << 20])).collect(), body: vec![] };
        for request in [empty, blank, binary, huge] {
            let rejection: Rejection = verifier
                .verify(&request.headers, &request.body, at(NOW))
                .expect_err(&format!("{} accepted {:?}", seeds.scheme.name, request.headers.len()));
            assert!(!rejection.to_string().is_empty());
        }
    }
}
