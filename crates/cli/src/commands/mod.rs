//! One module per subcommand.

pub mod bench;
pub mod connection;
pub mod demo;
pub mod dlq;
pub mod outbox;
pub mod publish;
pub mod registry;
pub mod schema;
pub mod tail;
