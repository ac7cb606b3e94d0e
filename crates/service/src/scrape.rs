//! A Prometheus file_sd target: a JSON file telling the local Prometheus where this service's
//! `/metrics` is, so services on any port are scraped without editing prometheus.yml.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
};

use crate::ServiceError;

/// The target file of one running service; removed when dropped (a clean exit, an error or a
/// panic), so Prometheus stops scraping a service that is gone. A killed process leaves it
/// behind, and Prometheus then shows the target down, which is the truth.
#[derive(Debug)]
pub struct ScrapeTarget {
    path: PathBuf,
}

impl ScrapeTarget {
    /// The subdirectory of the targets directory for endpoints behind a bearer token
    /// (`[http] bearer_token`): a file_sd target cannot carry credentials, so Prometheus scrapes
    /// these in a job of its own that sends the token (`authorization.credentials_file`).
    pub const SECURED: &'static str = "secured";

    /// Writes the target into `dir`, or into its [`SECURED`](Self::SECURED) subdirectory when
    /// `secured` (the endpoint needs a bearer token): see [`write`](Self::write).
    pub fn write_for(
        dir: &Path,
        service: &str,
        addr: SocketAddr,
        secured: bool,
    ) -> Result<Self, ServiceError> {
        if secured {
            Self::write(&dir.join(Self::SECURED), service, addr)
        } else {
            Self::write(dir, service, addr)
        }
    }

    /// Writes `<dir>/<service>-<port>.json` for a `/metrics` endpoint listening on `addr`:
    /// `[{"targets":["127.0.0.1:PORT"],"labels":{"service":"NAME"}}]`. The file appears
    /// atomically (written aside, then renamed), because Prometheus may read the directory at
    /// any moment and would drop a half-written target.
    pub fn write(dir: &Path, service: &str, addr: SocketAddr) -> Result<Self, ServiceError> {
        let path = dir.join(format!("{service}-{}.json", addr.port()));
        let failed = |source| ServiceError::ScrapeTarget { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(failed)?;
        let body = serde_json::json!([{
            "targets": [scrape_address(addr).to_string()],
            "labels": { "service": service },
        }]);
        // The temporary name does not end in `.json`, so Prometheus never reads it.
        let temporary = dir.join(format!(".{service}-{}.json.tmp", addr.port()));
        std::fs::write(&temporary, body.to_string()).map_err(failed)?;
        std::fs::rename(&temporary, &path).map_err(failed)?;
        Ok(Self { path })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScrapeTarget {
    fn drop(&mut self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %fanout_core::report(&e), "could not remove the scrape target")
            }
        }
    }
}

/// The address Prometheus on this host reaches a listener at: a wildcard listener is reached
/// through loopback.
fn scrape_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_describes_the_metrics_address_and_goes_away_on_drop() {
        let dir = tempfile::tempdir().expect("temp dir");
        let targets = dir.path().join("targets");
        let addr: SocketAddr = "0.0.0.0:9101".parse().expect("address");
        let target = ScrapeTarget::write(&targets, "rewards", addr).expect("written");
        assert_eq!(target.path(), targets.join("rewards-9101.json"));
        let text = std::fs::read_to_string(target.path()).expect("readable");
        let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!([{"targets": ["127.0.0.1:9101"], "labels": {"service": "rewards"}}])
        );
        let entries: Vec<_> = std::fs::read_dir(&targets).expect("listable").collect();
        assert_eq!(entries.len(), 1, "no temporary file left: {entries:?}");
        let path = target.path().to_owned();
        drop(target);
        assert!(!path.exists());
    }

    #[test]
    fn specific_addresses_are_kept() {
        let addr: SocketAddr = "10.1.2.3:80".parse().expect("address");
        assert_eq!(scrape_address(addr), addr);
        let v6: SocketAddr = "[::]:81".parse().expect("address");
        assert_eq!(scrape_address(v6).to_string(), "[::1]:81");
    }
}
