//! The domain's event types by name (`post.published`), for publish and typed tail: whatever
//! `fanout-events` lists, so a new event type needs no change here.

/// Fails with the list of known types when `name` is not one.
pub fn check(name: &str) -> anyhow::Result<()> {
    if fanout_events::TYPES.contains(&name) {
        Ok(())
    } else {
        Err(unknown(name))
    }
}

/// The error for an event type the domain does not have, listing those it has.
pub fn unknown(name: &str) -> anyhow::Error {
    anyhow::anyhow!("unknown event type {name:?}; known types: {}", fanout_events::TYPES.join(", "))
}
