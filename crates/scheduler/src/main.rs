//! `fanout-scheduler [--config FILE]`: delivers scheduled events until SIGTERM or Ctrl-C. With no
//! file, it runs against the local stack's defaults.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use fanout_scheduler::{Scheduler, SchedulerConfig};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("fanout-scheduler: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let args = fanout_service::Args::parse();
    let config: SchedulerConfig = fanout_config::load(args.config.as_deref())?;
    // The last spans are sent when `telemetry` drops, after the shutdown.
    let _telemetry =
        fanout_service::init_tracing("fanout-scheduler", &config.log, config.log_format, &config.telemetry)?;
    let scheduler = Scheduler::start(config).await.context("starting")?;
    tracing::info!(http = %scheduler.http_addr(), "serving /metrics, /healthz, /readyz");
    scheduler.run(fanout_service::shutdown_signal()).await?;
    Ok(())
}
