//! `post-service [--config post-service.toml] [--listen 127.0.0.1:8080]`: serves until SIGTERM or
//! Ctrl-C, then waits for the events in flight.

use std::{error::Error, process::ExitCode, time::Duration};

use fanout::events::PostPublished;
use fanout::{PublishOptions, Publisher, PublisherConfig};

const USAGE: &str = "usage: post-service [--config FILE] [--listen ADDR]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("post-service: {}", fanout::report(&*error));
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run() -> Result<(), Box<dyn Error>> {
    let (config, listen) = args()?;
    let config: PublisherConfig = fanout::config::load(Some(config.as_ref()))?;
    let publisher = Publisher::new(config)?;
    // The schema's registry id, once: a schema the registry does not have stops the service here.
    publisher.prepare::<PostPublished>().await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    eprintln!("post-service: POST http://{}/v1/events", listener.local_addr()?);
    let app = post_service::App::new(publisher, PublishOptions::new());
    fanout::axum::serve(listener, post_service::routes(app.clone())).with_graceful_shutdown(stop()).await?;
    app.publisher().flush(Duration::from_secs(10)).await?;
    Ok(())
}

/// `--config FILE` and `--listen ADDR`, each optional.
fn args() -> Result<(String, String), String> {
    let mut config = "post-service.toml".to_owned();
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = args.next().ok_or("--config needs a file")?,
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok((config, listen))
}

/// Completes at SIGTERM (how a container is stopped) or Ctrl-C.
async fn stop() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
