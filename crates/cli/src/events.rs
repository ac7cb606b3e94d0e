//! The event types the CLI knows by name (`post.published`), for publish and typed tail.

use anyhow::{bail, Context};
use fanout_core::Event;
use fanout_events::PostPublished;

/// Event types by their CloudEvents type.
pub const KNOWN: [&str; 1] = [PostPublished::TYPE];

/// Fails with the list of known types when `name` is not one.
pub fn check(name: &str) -> anyhow::Result<()> {
    if !KNOWN.contains(&name) {
        bail!("unknown event type {name:?}; known types: {}", KNOWN.join(", "));
    }
    Ok(())
}

/// Parses one JSON line as the event type `name`.
pub fn parse_post_published(line: &str, line_no: usize) -> anyhow::Result<PostPublished> {
    serde_json::from_str(line)
        .with_context(|| format!("line {line_no} is not a valid {} event", PostPublished::TYPE))
}
