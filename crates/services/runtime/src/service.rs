//! A service built from its configuration and wiring, ready to run.

use std::{
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use fanout_consumer::{Consumer, ConsumerBuilder, RegistryDecoder};
use sqlx::{migrate::Migrator, AnyPool};

use crate::{api::ApiError, ScrapeTarget, ServiceConfig, ServiceError, Settings};

/// The service's database, for its read API. The consumer opens the pool while it is built,
/// after the routes were handed over, so the routes hold this handle and it is filled before the
/// first request is served.
#[derive(Clone, Default)]
pub struct Db(Arc<OnceLock<AnyPool>>);

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("open", &self.0.get().is_some()).finish()
    }
}

impl Db {
    /// The pool; `503 Service Unavailable` before the store is open (cannot happen once the
    /// service runs, but a route must not panic on it).
    pub fn pool(&self) -> Result<&AnyPool, ApiError> {
        self.0.get().ok_or_else(|| ApiError::unavailable("the store is not open yet"))
    }

    fn set(&self, pool: AnyPool) {
        // Set once, by Service::build, right after the pool exists.
        let _ = self.0.set(pool);
    }
}

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
}

impl Service {
    /// Builds a service: the consumer configured by `config`, decoding through the registry of
    /// `config.registry`, with what `wire` adds (handlers, routes; the [`Db`] it receives is the
    /// service's database for those routes), then the service's tables migrated: `migrations`
    /// is its `sqlx::migrate!()`, numbered in one block of [`fanout_migrate::SERVICE_BLOCKS`] and
    /// applied as `S::SERVICE`.
    pub async fn build<S: Settings>(
        config: &ServiceConfig<S>,
        migrations: &Migrator,
        wire: impl FnOnce(ConsumerBuilder, Db) -> ConsumerBuilder,
    ) -> Result<Self, ServiceError> {
        config.validate()?;
        let decoder = RegistryDecoder::from_settings(&config.registry)?;
        let db = Db::default();
        let builder = wire(Consumer::builder(config.consumer()).decoder(decoder), db.clone());
        let consumer = builder.build().await?;
        fanout_migrate::apply(consumer.pool(), S::SERVICE, fanout_migrate::Blocks::Service, migrations)
            .await?;
        db.set(consumer.pool().clone());
        Ok(Self { name: config.name.clone(), consumer, targets_dir: config.prometheus_targets_dir.clone() })
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
    /// [`fanout_config::load`]), when one is set.
    ///
    /// Several services in one process share the process's metrics registry, so each
    /// `/metrics` serves all of them: give only one of them a targets directory, or Prometheus
    /// scrapes every series once per service.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
        let http = self.http_addr();
        let target = match &self.targets_dir {
            Some(dir) => Some(ScrapeTarget::write(dir, &self.name, http)?),
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
            Err(e) => tracing::error!(service = %self.name, error = %e, "service failed"),
        }
        Ok(result?)
    }
}
