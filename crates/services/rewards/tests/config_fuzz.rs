//! Fuzzing the config loader with the real config type: `rewards.toml`, damaged byte by byte
//! and with values of the wrong type, out of range or nested deep, through
//! `fanout_config::from_toml_str` and a file through `fanout_config::load`, then `validate`.
//! `FANOUT_FUZZ_COUNT` sets the number of cases.
//!
//! Properties: nothing panics; every refusal names a key or a line.

use fanout_rewards::RewardsConfig;
use fanout_testkit::fuzz;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

const FILE: &str = include_str!("../rewards.toml");

/// Every section the loader knows, written out, beside the shipped file.
const FULL: &str = r#"name = "rewards"
log = "info,fanout_consumer=debug"
log_format = "json"
prometheus_targets_dir = "/tmp/targets"
[service]
topic = "post.published"
beans_per_job_post = 10
[kafka]
bootstrap = "127.0.0.1:9092"
[kafka.properties]
"security.protocol" = "PLAINTEXT"
[registry]
urls = ["http://127.0.0.1:8081", "http://127.0.0.1:8082"]
[store]
url = "sqlite:rewards.db"
[http]
listen = "0.0.0.0:9101"
"#;

fn seeds() -> Vec<String> {
    vec![FILE.to_owned(), FULL.to_owned()]
}

/// Values that replace one: other types, edge numbers, deep nesting, odd strings.
const VALUES: &[&str] = &[
    "\"\"",
    "0",
    "-1",
    "1e309",
    "nan",
    "inf",
    "-inf",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "true",
    "[]",
    "{}",
    "[[[[[]]]]]",
    "{a = {b = {c = 1}}}",
    "1979-05-27T07:32:00Z",
    "\"\\u0000\"",
    "\"\\uD800\"",
    "'''\n'''",
    "\"\"\"\"\"\"",
    "0x7fffffffffffffff",
    "\"sqlite:\"",
    "\"http://[::1\"",
    "\"0.0.0.0:99999\"",
    "[\"\", \"\"]",
];

/// The seed with the value of one `key = value` line replaced.
fn value_replaced() -> impl Strategy<Value = String> {
    (0..2usize, any::<usize>(), prop::sample::select(VALUES)).prop_map(|(seed, line, value)| {
        let text = &seeds()[seed];
        let lines: Vec<&str> = text.lines().collect();
        let assignments: Vec<usize> =
            (0..lines.len()).filter(|i| lines[*i].contains(" = ") && !lines[*i].starts_with('#')).collect();
        let target = assignments[line % assignments.len()];
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i == target {
                    format!("{} = {value}", l.split(" = ").next().unwrap_or(""))
                } else {
                    (*l).to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// Whether `message` says where: a line, or a key of the config (or one the text wrote).
fn names_a_key_or_a_line(message: &str, text: &str) -> bool {
    let lower = message.to_lowercase();
    if lower.contains("line") {
        return true;
    }
    let known = [
        "name",
        "log",
        "log_format",
        "prometheus_targets_dir",
        "telemetry",
        "service",
        "topic",
        "beans_per_job_post",
        "kafka",
        "bootstrap",
        "properties",
        "registry",
        "urls",
        "store",
        "url",
        "http",
        "listen",
        "processing",
        "retry",
    ];
    let written = text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'));
    known.iter().copied().chain(written).filter(|key| !key.is_empty()).any(|key| {
        message.contains(&format!("`{key}`"))
            || message.contains(&format!("key `{key}"))
            || message.contains(&format!(": {key}:"))
            || message.contains(&format!(": {key}."))
    })
}

fn check(text: &str) {
    match fanout_config::from_toml_str::<RewardsConfig>(text) {
        Err(error) => {
            let message = error.to_string();
            assert!(
                names_a_key_or_a_line(&message, text),
                "says neither key nor line: {message}\nfor:\n{text}"
            );
        }
        Ok(config) => {
            if let Err(error) = config.validate() {
                let message = error.to_string();
                assert!(
                    names_a_key_or_a_line(&message, text),
                    "says neither key nor line: {message}\nfor:\n{text}"
                );
            }
        }
    }
}

#[test]
fn damaged_config_files_never_panic_and_every_refusal_says_where() {
    let mut runner = TestRunner::new(fuzz::config(fuzz::DEFAULT_CASES));
    runner
        .run(&fuzz::mutated_text(seeds()), |text| {
            check(&text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn values_of_the_wrong_type_or_out_of_range_never_panic_and_are_named() {
    let mut runner = TestRunner::new(fuzz::config(fuzz::DEFAULT_CASES));
    runner
        .run(&value_replaced(), |text| {
            check(&text);
            Ok(())
        })
        .unwrap();
}
