//! Starting and stopping the registry: the store, the tail and the HTTP server together.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::auth::Users;
use crate::config::RegistryConfig;
use crate::election::Election;
use crate::error::RegistryError;
use crate::store::{Store, Tail};

/// Starts registries.
#[derive(Debug)]
pub struct RegistryServer;

impl RegistryServer {
    /// Creates the state topic if absent, reads it to its end (so every id, version and setting
    /// written before is back), binds `config.listen` and serves in the background. The registry
    /// stops on [`RunningRegistry::shutdown`] or when the handle is dropped.
    pub async fn start(config: RegistryConfig) -> Result<RunningRegistry, RegistryError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| RegistryError::Bind { addr: config.listen, source })?;
        let local_addr =
            listener.local_addr().map_err(|source| RegistryError::Bind { addr: config.listen, source })?;
        // Users and certificate first: a bad hash or key file refuses to start before any Kafka work.
        let users = Users::new(&config.security.users)?;
        let tls = config.security.tls.as_ref().map(crate::tls::server_config).transpose()?;
        let forwarding = crate::tls::forwarding_client(config.security.tls.as_ref())?;
        let (store, tail) = Store::open(&config).await?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let me = config.advertised_url.clone().unwrap_or_else(|| {
            let ip = match local_addr.ip() {
                ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                ip => ip,
            };
            format!("{scheme}://{}", SocketAddr::new(ip, local_addr.port()))
        });
        let election = Arc::new(Election::start(&config, &me)?);
        let (stop, mut stopped) = watch::channel(false);
        let mut app = crate::api::router(store, election.clone(), forwarding);
        // Outermost: a follower checks credentials before it forwards a write (with them).
        if let Some(users) = &users {
            app = app.layer(axum::middleware::from_fn_with_state(users.clone(), crate::auth::check));
        }
        // Either an explicit stop or the handle being dropped ends the server.
        let stopped = async move {
            let _ = stopped.changed().await;
        };
        let server = match tls {
            Some(tls) => {
                let listener = crate::tls::TlsListener::new(listener, tls);
                tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await })
            }
            None => {
                tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stopped).await })
            }
        };
        tracing::info!(
            addr = %local_addr,
            topic = %config.topic,
            scheme,
            users = config.security.users.len(),
            "schema registry listening"
        );
        Ok(RunningRegistry {
            local_addr,
            scheme,
            stop,
            server: Some(server),
            tail: Some(tail),
            election: Some(election),
        })
    }

    /// Runs a registry until `shutdown` completes or the server fails, then stops it cleanly.
    pub async fn serve_until(
        config: RegistryConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), RegistryError> {
        let mut running = Self::start(config).await?;
        let server = running.server.take();
        match server {
            Some(mut server) => {
                tokio::select! {
                    () = shutdown => {
                        let _ = running.stop.send(true);
                        finish(server.await)?;
                    }
                    result = &mut server => finish(result)?,
                }
            }
            None => shutdown.await,
        }
        running.shutdown().await
    }
}

fn finish(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), RegistryError> {
    joined.map_err(|e| RegistryError::Task(e.to_string()))?.map_err(RegistryError::Serve)
}

/// A registry serving in the background.
#[derive(Debug)]
pub struct RunningRegistry {
    local_addr: SocketAddr,
    scheme: &'static str,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    tail: Option<Tail>,
    election: Option<Arc<Election>>,
}

impl RunningRegistry {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The base URL clients use, e.g. `http://127.0.0.1:8081`, or `https://...` when serving TLS.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.local_addr)
    }

    /// Stops accepting requests, lets requests in flight finish, stops tailing the topic.
    pub async fn shutdown(mut self) -> Result<(), RegistryError> {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            finish(server.await)?;
        }
        if let Some(tail) = self.tail.take() {
            tail.stop().await?;
        }
        // Leaving the election group joins its thread: off the async threads.
        if let Some(election) = self.election.take() {
            let _ = tokio::task::spawn_blocking(move || drop(election)).await;
        }
        Ok(())
    }
}
