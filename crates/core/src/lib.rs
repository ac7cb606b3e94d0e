//! The platform's core, shared by every Fanout crate: the [`Event`] trait a domain contract
//! implements, the CloudEvents envelope built and parsed once ([`envelope`], header names in
//! [`headers`]), the topic naming rules ([`topics`]), W3C trace context ([`trace`]), the clock
//! ([`clock`]), retry backoff ([`backoff`]) and the one way errors are printed ([`report`], and
//! [`debug_as_report!`] so that `Debug` prints the same).
//!
//! Domain contracts live in `fanout-events`; nothing here knows a business event.

#![warn(missing_docs)]

use apache_avro::Schema;
use serde::{de::DeserializeOwned, Serialize};

pub mod backoff;
pub mod clock;
pub mod envelope;
pub mod headers;
pub mod schedule;
mod secret;
pub mod topics;
pub mod trace;

pub use secret::Secret;

/// An error and its causes on one line, each once: `error: cause: cause's cause`.
///
/// Fanout's own errors never repeat their source in their message, so this is the one way to
/// print one with everything that explains it (logs, a binary's last line, dead-letter headers).
/// Some third-party errors do repeat it (sqlx's `Error::Database`, rdkafka's
/// `MetadataFetch`); a cause whose text is already on the line is therefore left out.
///
/// ```
/// let error = std::io::Error::other("disk full");
/// assert_eq!(fanout_core::report(&error), "disk full");
/// ```
pub fn report(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Implements `Debug` for error types as [`report`] prints them: the message and its causes.
///
/// Rust prints an error with `Debug` where a person reads it: `Error: {e:?}` when `main`
/// returns it, `unwrap`'s and `expect`'s panic message. A derived `Debug` shows the type's
/// fields there (`Invalid { origin: .., reason: .. }`), not the sentence the error was written
/// to say, and no cause. Every public error type of Fanout's libraries uses this instead of
/// `#[derive(Debug)]`, so both print the same line.
///
/// ```
/// #[derive(thiserror::Error)]
/// #[error("cannot load post-service.toml")]
/// struct LoadError(#[source] std::io::Error);
/// fanout_core::debug_as_report!(LoadError);
///
/// let error = LoadError(std::io::Error::other("permission denied"));
/// assert_eq!(format!("{error:?}"), "cannot load post-service.toml: permission denied");
/// ```
#[macro_export]
macro_rules! debug_as_report {
    ($($error:ty),+ $(,)?) => {$(
        impl ::std::fmt::Debug for $error {
            fn fmt(&self, formatter: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                formatter.write_str(&$crate::report(self))
            }
        }
    )+};
}

/// A domain event with an Avro contract, a topic and a partitioning key.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The CloudEvents `type` (`ce_type`), e.g. `post.published`.
    const TYPE: &'static str;
    /// The Kafka topic the event is published to.
    const TOPIC: &'static str;
    /// The Avro schema text, as in `schemas/`.
    const SCHEMA: &'static str;

    /// The parsed Avro schema (parsed once).
    fn schema() -> &'static Schema;

    /// The Kafka key: the aggregate id, so one aggregate's events stay ordered.
    fn key(&self) -> Vec<u8>;

    /// Appends [`Event::key`] to `out`. Publishers call this once per event with a reused
    /// buffer; override it when the key can be written without allocating.
    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key());
    }
}

/// Work on an event type chosen by name at run time (`fanout publish post.published`): the
/// domain crate's lookup (`fanout_events::visit`) calls [`EventVisitor::visit`] with the type the
/// name stands for, so tools handle every event type without listing them.
pub trait EventVisitor {
    /// What the work returns.
    type Output;

    /// Does the work with the event type `E`.
    fn visit<E: Event>(self) -> Self::Output;
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Hides(#[source] std::io::Error);

    #[derive(thiserror::Error)]
    #[error("cannot start")]
    struct Reported(#[source] Hides);
    crate::debug_as_report!(Reported);

    #[test]
    fn debug_prints_the_report_with_every_cause() {
        let error = Reported(Hides(std::io::Error::other("disk full")));
        assert_eq!(format!("{error:?}"), "cannot start: outer: disk full");
        assert_eq!(format!("{error:?}"), report(&error));
        // `{:#?}` (`dbg!`, pretty assertions) is the same line, not a field dump.
        assert_eq!(format!("{error:#?}"), report(&error));
    }

    #[test]
    fn causes_are_printed_once() {
        let repeated = Repeats(std::io::Error::other("disk full"));
        assert_eq!(report(&repeated), "outer: disk full");
        let hidden = Hides(std::io::Error::other("disk full"));
        assert_eq!(report(&hidden), "outer: disk full");
    }
}
