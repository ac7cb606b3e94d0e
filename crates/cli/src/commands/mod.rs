//! One module per subcommand.

pub mod connection;
pub mod dlq;
pub mod flow;
pub mod gateway;
pub mod new;
pub mod outbox;
pub mod publish;
pub mod registry;
pub mod schedule;
pub mod schema;
pub mod tail;

/// A time given on the command line: RFC 3339.
pub(crate) fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time such as 2026-01-02T03:04:05Z ({e})"))
}

/// A duration given on the command line: `90s`, `10m`, `2h 30m`, `1d`.
pub(crate) fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| format!("not a duration such as 90s, 10m or 2h ({e})"))
}
