//! Certificates for tests of TLS: a CA of their own and a server certificate it signed, as PEM
//! files in a temporary directory, made fresh per test (nothing checked in, nothing to expire).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A test CA and a certificate it signed for `localhost` and `127.0.0.1`, written as PEM files;
/// removed when dropped.
///
/// ```no_run
/// # fn example() -> anyhow::Result<()> {
/// let certs = fanout_testkit::TestCertificates::new()?;
/// // The server: certs.cert_path() and certs.key_path(). The client trusts certs.ca_path().
/// # let _ = certs; Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestCertificates {
    dir: tempfile::TempDir,
}

impl TestCertificates {
    /// Makes the CA and the server certificate.
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Fanout test CA");
        let ca = ca_params.self_signed(&ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        std::fs::write(dir.path().join("ca.pem"), ca.pem())?;
        std::fs::write(dir.path().join("server.pem"), cert.pem())?;
        std::fs::write(dir.path().join("server.key"), key.serialize_pem())?;
        Ok(Self { dir })
    }

    /// The CA's certificate, for the client to trust.
    pub fn ca_path(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// The server's certificate.
    pub fn cert_path(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// The server's private key.
    pub fn key_path(&self) -> PathBuf {
        self.path("server.key")
    }

    fn path(&self, name: &str) -> PathBuf {
        Path::join(self.dir.path(), name)
    }
}
