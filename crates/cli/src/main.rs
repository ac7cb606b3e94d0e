//! `fanout`: the operator's and the demo's command line.

mod commands;
mod events;

use clap::{Parser, Subcommand};

/// Fanout: publish domain events once, let any number of consumers react.
#[derive(Debug, Parser)]
#[command(name = "fanout", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job end to end: registry, rewards, pinning and stats against the local broker,
    /// realistic events through the SDK, a checked summary.
    Demo(fanout_demo::DemoArgs),
    /// The built-in Confluent-compatible schema registry.
    #[command(subcommand)]
    Registry(commands::registry::RegistryCommand),
    /// Register and fetch schemas in any Confluent-compatible registry.
    #[command(subcommand)]
    Schema(commands::schema::SchemaCommand),
    /// Publish events given as JSON lines through the producer SDK.
    Publish(commands::publish::PublishArgs),
    /// Print a topic's events decoded through the registry, as JSON lines.
    Tail(commands::tail::TailArgs),
    /// Scheduled events: list what waits, show, cancel or reschedule an entry.
    #[command(subcommand)]
    Schedule(commands::schedule::ScheduleCommand),
    /// Task flows: start a run, retry a task, run the tasks the engine starts.
    #[command(subcommand)]
    Flow(commands::flow::FlowCommand),
    /// The transactional outbox.
    #[command(subcommand)]
    Outbox(commands::outbox::OutboxCommand),
    /// A consumer's dead letters: list, show, replay through its retry topic.
    #[command(subcommand)]
    Dlq(commands::dlq::DlqCommand),
    /// The callback gateway: the requests it refused, with the reason.
    #[command(subcommand)]
    Gateway(commands::gateway::GatewayCommand),
    /// Write a new consumer or publisher crate, complete with its config file and a test.
    #[command(subcommand)]
    New(commands::new::NewCommand),
    /// Measure Fanout against raw Kafka clients and Confluent's Python serde, side by side.
    Bench(fanout_bench::BenchArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The demo sends its logs to a file of its own: its terminal is for its progress and summary.
    if !matches!(cli.command, Command::Demo(_)) {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("FANOUT_LOG")
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.command {
        Command::Demo(args) => args.run().await,
        Command::Registry(command) => command.run().await,
        Command::Schema(command) => command.run().await,
        Command::Publish(args) => args.run().await,
        Command::Tail(args) => args.run().await,
        Command::Schedule(command) => command.run().await,
        Command::Flow(command) => command.run().await,
        Command::Outbox(command) => command.run().await,
        Command::Dlq(command) => command.run().await,
        Command::Gateway(command) => command.run().await,
        Command::New(command) => command.run().await,
        Command::Bench(args) => args.run().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fanout: {}", fanout_core::report(error.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
