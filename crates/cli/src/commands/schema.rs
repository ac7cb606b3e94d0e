//! `fanout schema register|get`: schema tools for any Confluent-compatible registry.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use fanout_schema_registry::{SchemaRegistryClient, UnregisteredSchema};

use super::connection::Connection;

/// Schema tools.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Register an Avro schema file under a subject; prints `{"id": N}`.
    Register(RegisterArgs),
    /// Print the schema with this id.
    Get(GetArgs),
}

/// Arguments of `fanout schema register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The subject, e.g. `post.published-value`.
    #[arg(long)]
    subject: String,
    /// The `.avsc` file.
    file: PathBuf,
    #[command(flatten)]
    connection: Connection,
}

/// Arguments of `fanout schema get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The schema id.
    id: u32,
    #[command(flatten)]
    connection: Connection,
}

impl SchemaCommand {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Self::Register(args) => {
                let text = std::fs::read_to_string(&args.file)
                    .with_context(|| format!("cannot read {}", args.file.display()))?;
                let client = SchemaRegistryClient::new(args.connection.settings()?.registry)?;
                let id = client
                    .register(&args.subject, &UnregisteredSchema::avro(text))
                    .await
                    .with_context(|| format!("registering {} under {}", args.file.display(), args.subject))?;
                println!("{}", serde_json::json!({ "id": id }));
                Ok(())
            }
            Self::Get(args) => {
                let client = SchemaRegistryClient::new(args.connection.settings()?.registry)?;
                let schema = client
                    .schema_by_id(args.id)
                    .await
                    .with_context(|| format!("fetching schema {}", args.id))?;
                println!("{}", schema.schema);
                Ok(())
            }
        }
    }
}
