//! HTTPS: a listener that hands axum connections once their TLS handshake is done.
//!
//! Each handshake runs in a task of its own with a deadline, so a client that connects and says
//! nothing holds up no one else, and a failed handshake (a client that does not trust the
//! certificate) is logged and dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;
use crate::error::RegistryError;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls server configuration of `files`: the chain and key read and checked now, so a
/// wrong path or a key that does not match the certificate stops the registry at start.
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, RegistryError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            RegistryError::Tls(format!("cannot read certificates from {}: {e}", files.cert_path.display()))
        })?;
    if chain.is_empty() {
        return Err(RegistryError::Tls(format!("no certificate in {}", files.cert_path.display())));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_path).map_err(|e| {
        RegistryError::Tls(format!("cannot read a private key from {}: {e}", files.key_path.display()))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            RegistryError::Tls(format!(
                "{} and {} do not make a usable certificate and key: {e}",
                files.cert_path.display(),
                files.key_path.display()
            ))
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TCP listener whose connections come out TLS-terminated.
pub(crate) struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self { tcp, acceptor: TlsAcceptor::from(config), handshakes: JoinSet::new() }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let acceptor = self.acceptor.clone();
                        self.handshakes.spawn(async move {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => Some((tls, peer)),
                                Ok(Err(error)) => {
                                    tracing::info!(%peer, %error, "registry TLS handshake failed");
                                    None
                                }
                                Err(_) => {
                                    tracing::info!(%peer, "registry TLS handshake timed out");
                                    None
                                }
                            }
                        });
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: as axum's own listener, wait a
                        // moment instead of spinning.
                        tracing::warn!(%error, "registry cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
