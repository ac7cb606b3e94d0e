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
/// How long a follower tries to reach the leader before the write is refused (50003).
const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// The client a follower forwards writes with: rustls, trusting the public web roots and, when
/// given, the CA of the other instances' certificates; read now, so a wrong path stops the
/// registry at start rather than failing the first forwarded write.
pub(crate) fn forwarding_client(tls: Option<&TlsFiles>) -> Result<reqwest::Client, RegistryError> {
    let mut builder = reqwest::Client::builder().use_rustls_tls().connect_timeout(FORWARD_CONNECT_TIMEOUT);
    if let Some(path) = tls.and_then(|files| files.ca_cert_path.as_ref()) {
        // Parsed here rather than by reqwest, which would take a file holding no certificate
        // and trust nothing more, leaving every forwarded write to fail on the leader's.
        let cas: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<_, _>>()).map_err(
                |e| RegistryError::Tls(format!("cannot read the CA certificate {}: {e}", path.display())),
            )?;
        if cas.is_empty() {
            return Err(RegistryError::Tls(format!("no certificate in {}", path.display())));
        }
        for ca in cas {
            let ca = reqwest::Certificate::from_der(&ca).map_err(|e| {
                RegistryError::Tls(format!("the CA certificate in {} cannot be used: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(ca);
        }
    }
    builder.build().map_err(|e| RegistryError::Tls(format!("cannot build the forwarding client: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn files(ca: &std::path::Path) -> TlsFiles {
        TlsFiles {
            cert_path: "unused.pem".into(),
            key_path: "unused.key".into(),
            ca_cert_path: Some(ca.into()),
        }
    }

    #[test]
    fn a_forwarding_ca_that_cannot_be_used_is_named_at_start() {
        let missing = forwarding_client(Some(&files(std::path::Path::new("/nonexistent/ca.pem"))));
        let said = missing.map(|_| ()).unwrap_err().to_string();
        assert!(said.contains("cannot read the CA certificate /nonexistent/ca.pem"), "{said}");

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "a CA was meant to be here\n").unwrap();
        let said = forwarding_client(Some(&files(&empty))).map(|_| ()).unwrap_err().to_string();
        assert!(said.contains(&format!("no certificate in {}", empty.display())), "{said}");
    }
}
