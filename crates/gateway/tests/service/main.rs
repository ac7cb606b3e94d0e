//! The gateway service against the real broker, registry and PostgreSQL: what it publishes, what
//! it refuses and how, what it remembers, what a kill -9 under load costs, and how requesters get
//! their results. One test binary, so the suite links it once. (The test that kills the broker is
//! `kafka_down.rs`, alone in its binary.)

pub mod common;

mod admin_token;
mod callbacks;
mod kill;
mod requesters;
