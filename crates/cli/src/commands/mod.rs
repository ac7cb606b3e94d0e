//! One module per subcommand.

pub mod connection;
pub mod dlq;
pub mod new;
pub mod outbox;
pub mod publish;
pub mod registry;
pub mod schema;
pub mod tail;
