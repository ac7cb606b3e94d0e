//! A service built from its configuration and wiring, ready to run.

use std::{future::Future, net::SocketAddr, path::PathBuf};

use fanout_consumer::{Consumer, ConsumerBuilder, RegistryDecoder};
use sqlx::{migrate::Migrator, AnyPool};

use crate::{ScrapeTarget, ServiceConfig, ServiceError, Settings};

/// A consumer service wired and migrated, its HTTP port bound; nothing is consumed until
/// [`Service::run`].
///
/// ```no_run
/// # async fn example(service: fanout_service::Service) -> Result<(), fanout_service::ServiceError> {
/// println!("{} serves /metrics and its read API at http://{}", service.name(), service.http_addr());
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(service.run(async move { let _ = stopped.await; }));
/// // ...
/// let _ = stop.send(());
/// # let _ = running.await; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Service {
    name: String,
    consumer: Consumer,
    targets_dir: Option<PathBuf>,
    /// Whether `/metrics` needs a bearer token: its scrape target goes where Prometheus sends one.
    secured: bool,
}

impl Service {
    /// Builds a service: the consumer configured by `config`, decoding through the registry of
    /// `config.registry`, with what `wire` adds (handlers, and routes, which receive the
    /// service's database pool), then the service's tables migrated: `migrations`
    /// is its `sqlx::migrate!()`, numbered in one block of [`fanout_migrate::SERVICE_BLOCKS`] and
    /// applied as `S::SERVICE`.
    pub async fn build<S: Settings>(
        config: &ServiceConfig<S>,
        migrations: &Migrator,
        wire: impl FnOnce(ConsumerBuilder) -> ConsumerBuilder,
    ) -> Result<Self, ServiceError> {
        config.validate()?;
        let decoder = RegistryDecoder::from_settings(&config.registry)?;
        let consumer = wire(Consumer::builder(config.consumer.clone()).decoder(decoder)).build().await?;
        // Before `run`, so no route and no handler ever sees the tables missing.
        fanout_migrate::apply(consumer.pool(), S::SERVICE, fanout_migrate::Blocks::Service, migrations)
            .await?;
        Ok(Self {
            name: config.consumer.name.clone(),
            consumer,
            targets_dir: config.prometheus_targets_dir.clone(),
            secured: config.consumer.http.bearer_token.is_some()
                || config.consumer.http.bearer_token_file.is_some(),
        })
    }

    /// The consumer's name (its group).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where `/metrics`, `/healthz`, `/readyz` and the read API listen (the bound port, also
    /// when the configuration said port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.consumer.http_addr()
    }

    /// The service's database.
    pub fn pool(&self) -> &AnyPool {
        self.consumer.pool()
    }

    /// Consumes and serves until `shutdown` completes, then drains, commits and leaves the
    /// group. While it runs, a Prometheus scrape target for its `/metrics` is in the configured
    /// `prometheus_targets_dir` (`FANOUT_PROMETHEUS_TARGETS_DIR` when loaded with
    /// [`fanout_config::load`]), when one is set; in its `secured/` subdirectory when `/metrics`
    /// needs a bearer token ([`ScrapeTarget::SECURED`]).
    ///
    /// Several services in one process share the process's metrics registry, so each
    /// `/metrics` serves all of them: give only one of them a targets directory, or Prometheus
    /// scrapes every series once per service.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
        let http = self.http_addr();
        let target = match &self.targets_dir {
            Some(dir) => Some(ScrapeTarget::write_for(dir, &self.name, http, self.secured)?),
            None => None,
        };
        match &target {
            Some(target) => tracing::info!(
                service = %self.name,
                %http,
                scrape_target = %target.path().display(),
                "service starting"
            ),
            None => tracing::info!(service = %self.name, %http, "service starting"),
        }
        let result = self.consumer.run(shutdown).await;
        // Removed on every way out: a service that stopped must not stay a scrape target.
        drop(target);
        match &result {
            Ok(()) => tracing::info!(service = %self.name, "service stopped"),
            Err(e) => {
                tracing::error!(service = %self.name, error = %fanout_core::report(e), "service failed")
            }
        }
        Ok(result?)
    }
}
