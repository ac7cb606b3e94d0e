//! The local stack `scripts/stack` runs: the repository, the script, and the broker's process
//! (for the tests that kill it); the three-node [`Cluster`] of the fault suite, and
//! [`Toxiproxy`] between a client and that cluster ([`Cluster::through_toxiproxy`]) for its
//! network faults.

use std::path::PathBuf;

mod toxiproxy;

pub use toxiproxy::{Proxy, Stream, Toxic, ToxicKind, Toxiproxy, ToxiproxyError, DEFAULT_TOXIPROXY_API};

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub fn repo_root() -> PathBuf {
    // This crate is crates/testkit.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).map(PathBuf::from).unwrap_or(manifest)
}

/// The names of every binary target in the workspace, from `cargo metadata`.
pub fn workspace_binaries() -> anyhow::Result<Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(repo_root())
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let mut bins = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bin = target["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin"));
            if is_bin {
                if let Some(name) = target["name"].as_str() {
                    bins.push(name.to_owned());
                }
            }
        }
    }
    Ok(bins)
}

/// Runs `scripts/stack ARGS`, failing with its output when it fails.
pub fn stack(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(repo_root().join("scripts/stack")).args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "scripts/stack {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The directory `scripts/stack` keeps its state in (`FANOUT_STACK_DIR`, default `.stack`).
fn stack_dir() -> PathBuf {
    std::env::var("FANOUT_STACK_DIR").map(PathBuf::from).unwrap_or_else(|_| repo_root().join(".stack"))
}

fn read_pid(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let pid = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (is {what} run by scripts/stack?)", path.display()))?;
    Ok(pid.trim().to_owned())
}

/// The pid of the broker `scripts/stack` started.
pub fn broker_pid() -> anyhow::Result<String> {
    read_pid(&stack_dir().join("kafka/kafka.pid"), "the broker")
}

/// `kill -9` the broker `scripts/stack` started and wait until the process is gone, so a
/// following `scripts/stack up` starts a new one instead of finding the dying one alive.
pub async fn kill_broker() -> anyhow::Result<String> {
    let pid = broker_pid()?;
    kill_and_wait(&pid, "-9").await?;
    Ok(pid)
}

/// Sends `signal` (`-9`, `-TERM`, ...) to `pid` and waits up to 30 s until the process is gone.
pub async fn kill_and_wait(pid: &str, signal: &str) -> anyhow::Result<()> {
    let killed = std::process::Command::new("kill").args([signal, pid]).status()?;
    anyhow::ensure!(killed.success(), "kill {signal} {pid} failed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::process::Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()?
        .success()
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "process {pid} still alive 30 s after kill {signal}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The three-node KRaft cluster of `scripts/stack up kafka --brokers 3` (replication 3,
/// `min.insync.replicas=2`), beside the single test broker. Node `n` (1–3) serves PLAINTEXT on
/// `127.0.0.1:n9092`, SASL/SCRAM on `n9094`, and a plaintext listener advertised at `n9096`,
/// where Toxiproxy forwards to it ([`Cluster::through_toxiproxy`]).
#[derive(Debug, Clone)]
pub struct Cluster {
    kafka: crate::Kafka,
}

/// The cluster's nodes, as `scripts/stack` numbers them.
pub const CLUSTER_NODES: [i32; 3] = [1, 2, 3];

impl Cluster {
    /// Brings the cluster up (starting any node that is not running, a killed one included) and
    /// connects to it. The cluster is left running: `scripts/stack down kafka --brokers 3` stops
    /// it (`make faults` does). With `FANOUT_TEST_CLUSTER_SASL=1`, the handle and every client
    /// built from it log in over SASL/SCRAM-SHA-512 on the nodes' `n9094` listeners.
    pub async fn up() -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(|| stack(&["up", "kafka", "--brokers", "3"])).await??;
        let sasl = std::env::var("FANOUT_TEST_CLUSTER_SASL").is_ok_and(|v| v == "1");
        let (port, properties) = if sasl {
            let login = [
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "fanout"),
                ("sasl.password", "fanout-secret"),
            ];
            (9094, login.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
        } else {
            (9092, Vec::new())
        };
        let bootstrap =
            CLUSTER_NODES.iter().map(|n| format!("127.0.0.1:{n}{port}")).collect::<Vec<_>>().join(",");
        let kafka =
            crate::Kafka::connect_with(&bootstrap, properties, std::time::Duration::from_secs(30)).await?;
        Ok(Self { kafka })
    }

    /// The cluster as a [`Kafka`](crate::Kafka) handle: topics created through it have three
    /// replicas.
    pub fn kafka(&self) -> &crate::Kafka {
        &self.kafka
    }

    /// The pid of node `node`.
    pub fn pid(node: i32) -> anyhow::Result<String> {
        read_pid(&stack_dir().join(format!("kafka-cluster/node{node}/kafka.pid")), "the cluster")
    }

    /// `kill -9` node `node` and wait until its process is gone.
    pub async fn kill(&self, node: i32) -> anyhow::Result<()> {
        kill_and_wait(&Self::pid(node)?, "-9").await
    }

    /// Starts every node that is not running (after [`Cluster::kill`]) and waits until each
    /// answers metadata requests.
    pub async fn restart_killed(&self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(|| stack(&["up", "kafka", "--brokers", "3"])).await??;
        Ok(())
    }

    /// The high watermark of `partition` of `topic` (the offset its next record will get), from
    /// its leader now.
    pub async fn high_watermark(&self, topic: &str, partition: i32) -> anyhow::Result<i64> {
        let config = self.kafka.client_config();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let consumer: BaseConsumer = config.create()?;
            let (_, high) =
                consumer.fetch_watermarks(&topic, partition, std::time::Duration::from_secs(10))?;
            Ok(high)
        })
        .await?
    }

    /// The node leading `partition` of `topic` now, from the cluster's metadata.
    pub async fn leader(&self, topic: &str, partition: i32) -> anyhow::Result<i32> {
        let config = self.kafka.client_config();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let consumer: BaseConsumer = config.create()?;
            let metadata = consumer.fetch_metadata(Some(&topic), std::time::Duration::from_secs(10))?;
            let leader = metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions())
                .find(|p| p.id() == partition)
                .map(|p| p.leader())
                .ok_or_else(|| anyhow::anyhow!("no partition {partition} of {topic} in the metadata"))?;
            anyhow::ensure!(leader >= 1, "partition {partition} of {topic} has no leader now");
            Ok(leader)
        })
        .await?
    }
}

/// The cluster as a client sees it through Toxiproxy: one proxy per node, from `127.0.0.1:n9096`
/// (the address node `n` advertises on its `PROXIED` listener) to that listener on `n9095`. A
/// client built from [`ProxiedCluster::kafka`] reaches every node only through its proxy, so a
/// toxic on node `n`'s proxy cuts or slows that client's traffic to node `n`, and nothing else:
/// brokers, controllers and the direct [`Cluster::kafka`] handle talk on their own listeners.
///
/// Dropping it removes every toxic from the three proxies, so a failed test leaves no fault
/// behind for the next.
#[derive(Debug)]
pub struct ProxiedCluster {
    kafka: crate::Kafka,
    toxiproxy: Toxiproxy,
}

impl Cluster {
    /// Brings Toxiproxy up (`scripts/stack up toxiproxy`), makes sure it has a healthy proxy per
    /// node, and connects to the cluster through them. Fails unless the cluster's metadata, asked
    /// through a proxy, gives every node at its proxy's address: otherwise a client would bypass
    /// the proxies and a fault injected there would test nothing.
    ///
    /// The proxied listener is plaintext, also when the suite runs with
    /// `FANOUT_TEST_CLUSTER_SASL=1`.
    pub async fn through_toxiproxy(&self) -> anyhow::Result<ProxiedCluster> {
        tokio::task::spawn_blocking(|| stack(&["up", "toxiproxy"])).await??;
        let toxiproxy = Toxiproxy::connect().await?;
        let proxies: Vec<Proxy> = CLUSTER_NODES
            .iter()
            .map(|n| Proxy {
                name: ProxiedCluster::proxy(*n),
                listen: format!("127.0.0.1:{n}9096"),
                upstream: format!("127.0.0.1:{n}9095"),
            })
            .collect();
        toxiproxy.ensure_proxies(&proxies).await?;
        for proxy in &proxies {
            toxiproxy.heal(&proxy.name).await?;
        }
        let bootstrap = proxies.iter().map(|p| p.listen.as_str()).collect::<Vec<_>>().join(",");
        let kafka =
            crate::Kafka::connect_with(&bootstrap, Vec::new(), std::time::Duration::from_secs(30)).await?;
        let config = kafka.client_config();
        let advertised = tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let consumer: BaseConsumer = config.create()?;
            let metadata = consumer.fetch_metadata(None, std::time::Duration::from_secs(10))?;
            anyhow::Ok(
                metadata
                    .brokers()
                    .iter()
                    .map(|b| (b.id(), format!("{}:{}", b.host(), b.port())))
                    .collect::<Vec<_>>(),
            )
        })
        .await??;
        for node in CLUSTER_NODES {
            let want = format!("127.0.0.1:{node}9096");
            anyhow::ensure!(
                advertised.iter().any(|(id, address)| *id == node && *address == want),
                "through Toxiproxy the cluster advertises {advertised:?}, not node {node} at {want}: \
                 restart the cluster with deploy/local/kafka/cluster.properties' PROXIED listener \
                 (`scripts/stack down kafka --brokers 3 && scripts/stack up kafka --brokers 3`)"
            );
        }
        Ok(ProxiedCluster { kafka, toxiproxy })
    }
}

impl ProxiedCluster {
    /// The name of node `node`'s proxy.
    pub fn proxy(node: i32) -> String {
        format!("kafka-node-{node}")
    }

    /// A handle whose clients reach the cluster only through the proxies (bootstrap
    /// `127.0.0.1:19096,29096,39096`, plaintext).
    pub fn kafka(&self) -> &crate::Kafka {
        &self.kafka
    }

    /// The Toxiproxy API the proxies belong to.
    pub fn toxiproxy(&self) -> &Toxiproxy {
        &self.toxiproxy
    }

    /// Adds `toxics` to node `node`'s proxy.
    pub async fn add(&self, node: i32, toxics: &[Toxic]) -> Result<(), ToxiproxyError> {
        for toxic in toxics {
            self.toxiproxy.add_toxic(&Self::proxy(node), toxic).await?;
        }
        Ok(())
    }

    /// Adds `toxics` to every node's proxy.
    pub async fn add_everywhere(&self, toxics: &[Toxic]) -> Result<(), ToxiproxyError> {
        for node in CLUSTER_NODES {
            self.add(node, toxics).await?;
        }
        Ok(())
    }

    /// Removes `toxics` (by name) from node `node`'s proxy.
    pub async fn remove(&self, node: i32, toxics: &[Toxic]) -> Result<(), ToxiproxyError> {
        for toxic in toxics {
            self.toxiproxy.remove_toxic(&Self::proxy(node), &toxic.name).await?;
        }
        Ok(())
    }

    /// Removes `toxics` (by name) from every node's proxy.
    pub async fn remove_everywhere(&self, toxics: &[Toxic]) -> Result<(), ToxiproxyError> {
        for node in CLUSTER_NODES {
            self.remove(node, toxics).await?;
        }
        Ok(())
    }

    /// Removes every toxic from the three proxies and enables them.
    pub async fn heal(&self) -> Result<(), ToxiproxyError> {
        heal_cluster_proxies(&self.toxiproxy).await
    }

    /// The bytes that went through node `node`'s proxy (both directions) since Toxiproxy
    /// started.
    pub async fn bytes(&self, node: i32) -> Result<u64, ToxiproxyError> {
        self.toxiproxy.bytes(&Self::proxy(node)).await
    }
}

impl Drop for ProxiedCluster {
    fn drop(&mut self) {
        // As TestTopic's drop: a thread with a runtime of its own, since drop may run inside one.
        let toxiproxy = self.toxiproxy.clone();
        let healing = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(runtime) = runtime {
                if let Err(e) = runtime.block_on(heal_cluster_proxies(&toxiproxy)) {
                    eprintln!("testkit: could not remove the toxics from the cluster's proxies: {e}");
                }
            }
        });
        let _ = healing.join();
    }
}

async fn heal_cluster_proxies(toxiproxy: &Toxiproxy) -> Result<(), ToxiproxyError> {
    for node in CLUSTER_NODES {
        toxiproxy.heal(&ProxiedCluster::proxy(node)).await?;
    }
    Ok(())
}
