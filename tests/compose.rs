//! docker-compose.yml cannot run here (no Docker engine), so this keeps it honest: every file it
//! mounts exists, every Fanout service runs a binary this workspace builds with a config file from
//! this repository, the ports it publishes are the ones that config listens on, Prometheus
//! scrapes each service where it actually listens, and spans go to the Jaeger service's OTLP port.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use fanout_testkit::stack::{repo_root, workspace_binaries};
use serde_yaml::Value;

fn compose() -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(repo_root().join("docker-compose.yml"))?;
    Ok(serde_yaml::from_str(&text)?)
}

fn services(compose: &Value) -> anyhow::Result<BTreeMap<String, Value>> {
    let map = compose["services"].as_mapping().context("compose has no services")?;
    Ok(map.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone()))).collect())
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Container ports a service publishes (`ports`) or exposes to the network (`expose`).
fn container_ports(service: &Value) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for spec in strings(&service["ports"]) {
        if let Some(port) = spec.rsplit(':').next().and_then(|p| p.parse().ok()) {
            ports.insert(port);
        }
    }
    for key in ["expose"] {
        for v in service[key].as_sequence().into_iter().flatten() {
            let port = v.as_u64().map(|p| p as u16).or_else(|| v.as_str().and_then(|s| s.parse().ok()));
            ports.extend(port);
        }
    }
    ports
}

/// Bind mounts as (repository path, container path).
fn mounts(service: &Value) -> Vec<(String, String)> {
    strings(&service["volumes"])
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .filter_map(|v| {
            let mut parts = v.split(':');
            Some((parts.next()?.trim_start_matches("./").to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit(':').next()?.parse().ok()
}

#[test]
fn every_mounted_file_exists_in_the_repository() -> anyhow::Result<()> {
    for (name, service) in services(&compose()?)? {
        for (source, _) in mounts(&service) {
            let path = repo_root().join(&source);
            assert!(path.exists(), "service {name} mounts ./{source}, which is not in the repository");
        }
    }
    Ok(())
}

#[test]
fn kafka_is_the_official_image_in_kraft_mode() -> anyhow::Result<()> {
    let services = services(&compose()?)?;
    let kafka = services.get("kafka").context("no kafka service")?;
    let image = kafka["image"].as_str().unwrap_or_default();
    assert!(image.starts_with("apache/kafka:4."), "kafka image is {image}");
    let roles = kafka["environment"]["KAFKA_PROCESS_ROLES"].as_str().unwrap_or_default();
    assert_eq!(roles, "broker,controller");
    Ok(())
}

/// Every service built from this repository runs one of the workspace's binaries; when it is
/// given `--config FILE`, FILE is mounted from the repository, and the port the file (or a
/// `--listen` flag) names is the port the service publishes.
#[test]
fn fanout_services_agree_with_binaries_and_config_files() -> anyhow::Result<()> {
    let binaries = workspace_binaries()?;
    for (name, service) in services(&compose()?)? {
        if service.get("build").is_none() {
            continue;
        }
        assert!(
            repo_root().join("Dockerfile").exists(),
            "service {name} is built but there is no Dockerfile"
        );
        let command = strings(&service["command"]);
        let entry = service["entrypoint"].as_str().map(str::to_owned).or_else(|| command.first().cloned());
        let Some(binary) = entry else { bail!("service {name} has no command") };
        assert!(
            binaries.contains(&binary),
            "service {name} runs `{binary}`, which the workspace does not build ({binaries:?})"
        );

        let ports = container_ports(&service);
        let mut listens = Vec::new();
        for pair in command.windows(2) {
            if pair[0] == "--listen" {
                listens.extend(port_of(&pair[1]));
            }
            if pair[0] == "--config" {
                let (source, _) =
                    mounts(&service).into_iter().find(|(_, target)| target == &pair[1]).with_context(
                        || format!("service {name}: config {} is not mounted from the repository", pair[1]),
                    )?;
                let text = std::fs::read_to_string(repo_root().join(&source))?;
                let config: toml::Value =
                    toml::from_str(&text).with_context(|| format!("{source} is not valid TOML"))?;
                let listen = config
                    .get("http")
                    .and_then(|h| h.get("listen"))
                    .and_then(|l| l.as_str())
                    .with_context(|| format!("{source} has no [http] listen"))?;
                listens.extend(port_of(listen));
            }
        }
        assert!(!listens.is_empty(), "service {name} names no port to listen on");
        for port in listens {
            assert!(ports.contains(&port), "service {name} listens on {port} but publishes {ports:?}");
        }
    }
    Ok(())
}

/// Prometheus scrapes each compose service at a port that service listens on.
#[test]
fn prometheus_scrapes_services_where_they_listen() -> anyhow::Result<()> {
    let services = services(&compose()?)?;
    let text = std::fs::read_to_string(repo_root().join("deploy/prometheus/prometheus.yml"))?;
    let prometheus: Value = serde_yaml::from_str(&text)?;
    let mut checked = 0;
    for job in prometheus["scrape_configs"].as_sequence().into_iter().flatten() {
        for statics in job["static_configs"].as_sequence().into_iter().flatten() {
            for target in strings(&statics["targets"]) {
                let (host, port) = target.rsplit_once(':').context("target without port")?;
                if host == "localhost" {
                    continue;
                }
                let service = services
                    .get(host)
                    .with_context(|| format!("prometheus scrapes {host}, which is not a compose service"))?;
                let port: u16 = port.parse()?;
                assert!(
                    container_ports(service).contains(&port),
                    "prometheus scrapes {target} but {host} publishes {:?}",
                    container_ports(service)
                );
                checked += 1;
            }
        }
    }
    let built = services.values().filter(|s| s.get("build").is_some()).count();
    assert!(checked >= built, "{built} Fanout services but only {checked} scrape targets");
    Ok(())
}

/// Every service that exports spans sends them to a compose service at a port it publishes, and
/// every Fanout service exports them.
#[test]
fn services_export_spans_to_jaeger() -> anyhow::Result<()> {
    let services = services(&compose()?)?;
    let jaeger = services.get("jaeger").context("no jaeger service")?;
    assert!(jaeger["image"].as_str().unwrap_or_default().starts_with("jaegertracing/jaeger:2."));
    for (name, service) in &services {
        let endpoint = service["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str();
        let runs_fanout = strings(&service["command"]).first().is_some_and(|c| c.starts_with("fanout-"));
        let Some(endpoint) = endpoint else {
            assert!(!runs_fanout, "service {name} exports no spans (no OTEL_EXPORTER_OTLP_ENDPOINT)");
            continue;
        };
        let authority = endpoint.strip_prefix("http://").context("OTLP endpoint is not http://")?;
        let (host, port) =
            authority.trim_end_matches('/').rsplit_once(':').context("OTLP endpoint without port")?;
        let target = services
            .get(host)
            .with_context(|| format!("{name} exports spans to {host}, not a compose service"))?;
        let port: u16 = port.parse()?;
        assert!(
            container_ports(target).contains(&port),
            "{name} exports spans to {host}:{port} but {host} publishes {:?}",
            container_ports(target)
        );
    }
    Ok(())
}
