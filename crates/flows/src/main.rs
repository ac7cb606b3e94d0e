//! `fanout-flows [--config FILE]`: the trigger engine, until SIGTERM or Ctrl-C. With no file, it
//! runs the flows of `flows/` against the local stack.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fanout_flows::{Engine, EngineConfig};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fanout-flows: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = fanout_service::Args::parse();
    let config: EngineConfig = fanout_config::load(args.config.as_deref())?;
    // The last spans are sent when `telemetry` drops, after the shutdown.
    let _telemetry =
        fanout_service::init_tracing("fanout-flows", &config.log, config.log_format, &config.telemetry)?;
    let engine = Engine::start(config).await.context("starting")?;
    tracing::info!(http = %engine.http_addr(), "serving /metrics, /healthz, /readyz");
    engine.run(fanout_service::shutdown_signal()).await?;
    Ok(())
}
