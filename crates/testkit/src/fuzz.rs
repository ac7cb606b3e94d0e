//! What the fuzz tests share: how many cases to run and strategies that mutate valid inputs.
//!
//! Every fuzz test runs [`DEFAULT_CASES`] cases (a few seconds in a debug build), or
//! `FANOUT_FUZZ_COUNT` when set (`make fuzz` sets it high). [`mutated`] starts from valid seeds
//! (a registered schema, a service's config file, a signed request) and damages them the ways
//! hostile or broken input does: bytes flipped, inserted, deleted or replaced, a span
//! duplicated or moved, the text cut short, a piece of another seed spliced in, invalid UTF-8.
//!
//! ```
//! use fanout_testkit::fuzz;
//! use proptest::test_runner::{Config, TestRunner};
//!
//! let mut runner = TestRunner::new(Config::with_cases(fuzz::cases(16)));
//! runner.run(&fuzz::mutated(vec![b"{\"a\":1}".to_vec()]), |input| {
//!     let _ = serde_json::from_slice::<serde_json::Value>(&input);
//!     Ok(())
//! }).unwrap();
//! ```

use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases a fuzz test runs when `FANOUT_FUZZ_COUNT` is unset.
pub const DEFAULT_CASES: u32 = 2_000;

/// `FANOUT_FUZZ_COUNT` when it is set to a number, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("FANOUT_FUZZ_COUNT").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// A proptest configuration of [`cases`]`(default)` cases that does not write failure files
/// (the failures found become regression tests written by hand) and shrinks for a bounded time.
pub fn config(default: u32) -> Config {
    Config { cases: cases(default), failure_persistence: None, max_shrink_time: 60_000, ..Config::default() }
}

/// One damage done to an input: see [`mutations`] and [`Mutation::apply`].
#[derive(Debug, Clone)]
pub struct Mutation(Damage);

#[derive(Debug, Clone)]
enum Damage {
    /// Flips bit `bit` of the byte at `at` (positions are taken modulo the length).
    Flip { at: usize, bit: u8 },
    /// Replaces the byte at `at`.
    Set { at: usize, byte: u8 },
    /// Inserts bytes at `at`.
    Insert { at: usize, bytes: Vec<u8> },
    /// Deletes up to `len` bytes from `at`.
    Delete { at: usize, len: usize },
    /// Copies up to `len` bytes from `from` and inserts them at `to`.
    Duplicate { from: usize, len: usize, to: usize },
    /// Cuts the input at `at`.
    Truncate { at: usize },
    /// Inserts up to `len` bytes of seed `seed` (from `from`) at `at`.
    Splice { seed: usize, from: usize, len: usize, at: usize },
}

/// Bytes a text format gives meaning to, over-represented so mutations hit structure.
const INTERESTING: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"'",
    b",",
    b":",
    b"=",
    b"\n",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"0",
    b"-1",
    b"1e309",
    b"9223372036854775808",
    b"-9223372036854775809",
    b"4294967296",
    b"18446744073709551616",
    b"NaN",
    b"null",
    b"true",
    b"\"\"",
    b"{}",
    b"[]",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x00",
    b"#",
    b"[[",
    b"]]",
];

fn insertion() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(INTERESTING).prop_map(<[u8]>::to_vec),
        1 => prop::collection::vec(any::<u8>(), 1..8),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    let at = any::<usize>();
    prop_oneof![
        1 => (at, 0u8..8).prop_map(|(at, bit)| Damage::Flip { at, bit }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| Damage::Set { at, byte }),
        3 => (at, insertion()).prop_map(|(at, bytes)| Damage::Insert { at, bytes }),
        2 => (at, 1usize..32).prop_map(|(at, len)| Damage::Delete { at, len }),
        1 => (at, 1usize..64, at).prop_map(|(from, len, to)| Damage::Duplicate { from, len, to }),
        1 => at.prop_map(|at| Damage::Truncate { at }),
        1 => (any::<usize>(), at, 1usize..128, at)
            .prop_map(|(seed, from, len, at)| Damage::Splice { seed, from, len, at }),
    ]
}

/// One to eight mutations, to apply to an input of the caller's choosing (a header's value, a
/// body) with [`Mutation::apply`].
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(damage().prop_map(Mutation), 1..8)
}

impl Mutation {
    /// Damages `input`; [`Damage::Splice`] takes its span from one of `seeds` (and does
    /// nothing without any).
    pub fn apply(&self, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
        apply(input, &self.0, seeds);
    }
}

fn apply(input: &mut Vec<u8>, mutation: &Damage, seeds: &[Vec<u8>]) {
    let len = input.len();
    let pos = |at: usize| if len == 0 { 0 } else { at % len };
    match mutation {
        Damage::Flip { at, bit } if len > 0 => input[pos(*at)] ^= 1 << bit,
        Damage::Set { at, byte } if len > 0 => input[pos(*at)] = *byte,
        Damage::Insert { at, bytes } => {
            let at = if len == 0 { 0 } else { at % (len + 1) };
            input.splice(at..at, bytes.iter().copied());
        }
        Damage::Delete { at, len: n } if len > 0 => {
            let at = pos(*at);
            input.drain(at..(at + n).min(len));
        }
        Damage::Duplicate { from, len: n, to } if len > 0 => {
            let from = pos(*from);
            let span = input[from..(from + n).min(len)].to_vec();
            let to = to % (len + 1);
            input.splice(to..to, span);
        }
        Damage::Truncate { at } => input.truncate(if len == 0 { 0 } else { at % (len + 1) }),
        Damage::Splice { seed, from, len: n, at } if !seeds.is_empty() => {
            let other = &seeds[seed % seeds.len()];
            if !other.is_empty() {
                let from = from % other.len();
                let span = &other[from..(from + n).min(other.len())];
                let at = if len == 0 { 0 } else { at % (len + 1) };
                input.splice(at..at, span.iter().copied());
            }
        }
        _ => {}
    }
}

/// One of `seeds`, damaged by up to eight [`Mutation`]s (and, one time in sixteen, untouched).
///
/// # Panics
///
/// When `seeds` is empty.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "mutated needs at least one seed");
    let count = seeds.len();
    (0..count, prop::collection::vec(damage(), 0..8), 0u8..16).prop_map(move |(index, mutations, keep)| {
        let mut input = seeds[index].clone();
        if keep != 0 {
            for mutation in &mutations {
                apply(&mut input, mutation, &seeds);
            }
        }
        input
    })
}

/// [`mutated`] as text: the bytes, with invalid UTF-8 replaced by U+FFFD.
pub fn mutated_text(seeds: Vec<String>) -> impl Strategy<Value = String> {
    mutated(seeds.into_iter().map(String::into_bytes).collect())
        .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// `depth` copies of `open`, then `inner`, then `depth` copies of `close`: input nested deeper
/// than any parser should follow on the stack.
pub fn nested(open: &str, inner: &str, close: &str, depth: usize) -> String {
    let mut text = String::with_capacity((open.len() + close.len()) * depth + inner.len());
    for _ in 0..depth {
        text.push_str(open);
    }
    text.push_str(inner);
    for _ in 0..depth {
        text.push_str(close);
    }
    text
}

#[cfg(test)]
mod tests {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    use super::*;

    #[test]
    fn mutations_stay_near_the_seed_and_sometimes_break_utf8() {
        let seed = br#"{"type": "record", "name": "R", "fields": []}"#.to_vec();
        // A fixed seed: the thresholds below hold for this draw, not for every random one.
        let mut runner = TestRunner::deterministic();
        let (mut changed, mut not_utf8) = (0, 0);
        let strategy = mutated(vec![seed.clone()]);
        for _ in 0..500 {
            let input = strategy.new_tree(&mut runner).expect("a value").current();
            assert!(input.len() < seed.len() * 4 + 1024, "grew to {}", input.len());
            changed += usize::from(input != seed);
            not_utf8 += usize::from(std::str::from_utf8(&input).is_err());
        }
        assert!(changed > 400, "only {changed} of 500 changed");
        assert!(not_utf8 > 10, "only {not_utf8} of 500 were not UTF-8");
    }

    #[test]
    fn nested_nests() {
        assert_eq!(nested("[", "1", "]", 3), "[[[1]]]");
    }
}
