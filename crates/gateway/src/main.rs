//! `fanout-gateway [--config FILE]`: serves providers' callbacks until SIGTERM or Ctrl-C.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fanout_gateway::{Gateway, GatewayConfig};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fanout-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = fanout_service::Args::parse();
    let config: GatewayConfig = fanout_config::load(args.config.as_deref())?;
    // The last spans are sent when `telemetry` drops, after the shutdown.
    let _telemetry =
        fanout_service::init_tracing("fanout-gateway", &config.log, config.log_format, &config.telemetry)?;
    let gateway = Gateway::start(config).await.context("starting")?;
    gateway.run(fanout_service::shutdown_signal()).await?;
    Ok(())
}
