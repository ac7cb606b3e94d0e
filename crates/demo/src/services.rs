//! The three post-published services, run in this process the way their binaries run them.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::Context;
use fanout_service::{Service, ServiceConfig, Settings};
use indicatif::ProgressBar;
use tokio::{sync::watch, task::JoinSet};

/// The consumers the demo runs, by name.
pub const NAMES: [&str; 3] = ["rewards", "pinning", "stats"];

/// One running service.
#[derive(Debug)]
pub struct RunningService {
    /// Its consumer name (and group).
    pub name: &'static str,
    /// Its read-API path segment: `/v1/users/{id}/{resource}`.
    pub resource: &'static str,
    /// Where `/metrics`, `/readyz` and the read API listen.
    pub http: SocketAddr,
}

/// The services and the means to stop them.
#[derive(Debug)]
pub struct Running {
    /// In [`NAMES`] order.
    pub services: Vec<RunningService>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<(String, Result<(), fanout_service::ServiceError>)>,
}

impl Running {
    /// Asks every service to drain and commit, and waits for them.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut failures = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok((_, Ok(()))) => {}
                Ok((name, Err(e))) => failures.push(format!("{name}: {}", fanout_core::report(&e))),
                Err(e) => failures.push(format!("a service task: {e}")),
            }
        }
        anyhow::ensure!(failures.is_empty(), "services failed: {}", failures.join("; "));
        Ok(())
    }
}

/// A service's config for the demo: its own SQLite file in `workdir`, a free port, the demo's
/// topic and registry; everything else is the service's defaults.
fn config<S: Settings>(
    settings: S,
    bootstrap: &str,
    registry: &str,
    workdir: &Path,
    scrape: bool,
) -> ServiceConfig<S> {
    let mut config = ServiceConfig::new(settings);
    config.consumer.kafka.bootstrap = bootstrap.to_owned();
    config.registry.urls = vec![registry.to_owned()];
    config.consumer.store.url = format!("sqlite:{}", workdir.join(format!("{}.db", S::SERVICE)).display());
    config.consumer.http.listen = "127.0.0.1:0".to_owned();
    // The demo reads the metrics in process once at the end; a short interval keeps lag fresh
    // for anyone watching Prometheus meanwhile.
    config.consumer.processing.statistics_interval_ms = 1_000;
    // All three share this process's metrics registry, so one scrape target covers them all.
    if !scrape {
        config.prometheus_targets_dir = None;
    } else if let Ok(dir) = std::env::var(fanout_service::TARGETS_DIR_ENV) {
        config.prometheus_targets_dir = Some(dir.into());
    }
    config
}

/// Builds and starts rewards, pinning and stats on `topic`.
pub async fn start(bootstrap: &str, registry: &str, topic: &str, workdir: &Path) -> anyhow::Result<Running> {
    let rewards = fanout_rewards::RewardsSettings { topic: topic.to_owned(), ..Default::default() };
    let pinning = fanout_pinning::PinningSettings { topic: topic.to_owned(), ..Default::default() };
    let stats = fanout_stats::StatsSettings { topic: topic.to_owned() };
    let built: Vec<(&'static str, &'static str, Service)> = vec![
        (
            "rewards",
            "beans",
            fanout_rewards::build(config(rewards, bootstrap, registry, workdir, true))
                .await
                .context("starting rewards")?,
        ),
        (
            "pinning",
            "pins",
            fanout_pinning::build(config(pinning, bootstrap, registry, workdir, false))
                .await
                .context("starting pinning")?,
        ),
        (
            "stats",
            "stats",
            fanout_stats::build(config(stats, bootstrap, registry, workdir, false))
                .await
                .context("starting stats")?,
        ),
    ];
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut services = Vec::new();
    for (name, resource, service) in built {
        services.push(RunningService { name, resource, http: service.http_addr() });
        let mut stopped = stopped.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            (name.to_owned(), service.run(shutdown).await)
        });
    }
    Ok(Running { services, stop, tasks })
}

/// Waits until every service's `/readyz` answers 200: partitions assigned, store reachable.
pub async fn wait_ready(running: &Running, deadline: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let until = tokio::time::Instant::now() + deadline;
    for service in &running.services {
        let url = format!("http://{}/readyz", service.http);
        loop {
            let ready = http.get(&url).send().await.map(|r| r.status().is_success()).unwrap_or(false);
            if ready {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < until,
                "{} was not ready within {deadline:?} ({url})",
                service.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Waits until each service has finished (applied, skipped or dead-lettered) `records`
/// records of `topic`, moving its progress bar; fails naming the laggards at `deadline`.
pub async fn wait_caught_up(
    running: &Running,
    topic: &str,
    records: u64,
    deadline: Duration,
    bars: &[ProgressBar],
) -> anyhow::Result<()> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let families = prometheus::gather();
        let mut behind = Vec::new();
        for (service, bar) in running.services.iter().zip(bars) {
            let figures = super::report::figures(&families, service.name, topic);
            bar.set_position(figures.finished().min(records));
            if figures.finished() >= records {
                bar.set_message("caught up");
            } else {
                behind.push(format!("{} ({} of {records})", service.name, figures.finished()));
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= until {
            anyhow::bail!("not caught up within {deadline:?}: {}", behind.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
