//! `{{name}} [--config {{name}}.toml] [--listen 127.0.0.1:{{port}}]`: serves until SIGTERM or
//! Ctrl-C, then waits for the events in flight.

use std::{error::Error, process::ExitCode, time::Duration};

use fanout::events::{{Event}};
use fanout::{PublishOptions, Publisher, PublisherConfig};

const USAGE: &str = "usage: {{name}} [--config FILE] [--listen ADDR]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{{name}}: {}", fanout::report(&*error));
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
    publisher.prepare::<{{Event}}>().await?;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
    eprintln!("{{name}}: POST http://{}/v1/events", listener.local_addr()?);
    let app = {{crate}}::App::new(publisher, PublishOptions::new());
    fanout::axum::serve(listener, {{crate}}::routes(app.clone())).with_graceful_shutdown(stop()).await?;
    app.publisher().flush(Duration::from_secs(10)).await?;
    Ok(())
}

/// `--config FILE` and `--listen ADDR`, each optional.
fn args() -> Result<(String, String), String> {
    let mut config = "{{name}}.toml".to_owned();
    let mut listen = "127.0.0.1:{{port}}".to_owned();
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
