//! Every `fanout` command reaches a cluster behind SASL/SCRAM-SHA-512 through one configuration
//! file, as a service does: the registry serves from it, `publish` writes through it, `tail` reads
//! back what was written, `dlq list` answers from it; a wrong password fails at once, naming
//! authentication. The listener and its user come from `scripts/stack` (port 9094, user
//! `fanout`, password `fanout-secret`).

use std::{
    io::Write,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context};
use fanout_testkit::{unique_name, wait_until, Kafka};
use serde_json::Value;
use tokio::{io::AsyncWriteExt, process::Command};

/// The stack's SASL listener; another one can be named for a remote cluster.
fn sasl_bootstrap() -> String {
    std::env::var("FANOUT_TEST_SASL_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9094".to_owned())
}

/// A configuration file for the SASL listener with `password`, and the registry at `registry`.
fn config_file(password: &str, registry: &str) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    writeln!(
        file,
        "[kafka]\nbootstrap = \"{}\"\n[kafka.properties]\n\"security.protocol\" = \"SASL_PLAINTEXT\"\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"fanout\"\n\"sasl.password\" = \"{password}\"\n\
         [registry]\nurls = [\"{registry}\"]",
        sasl_bootstrap()
    )?;
    Ok(file)
}

fn fanout() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanout"));
    command.env("FANOUT_LOG", "error").kill_on_drop(true);
    command
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[tokio::test]
async fn every_command_goes_through_the_sasl_listener_and_a_wrong_password_fails_fast() -> anyhow::Result<()>
{
    let kafka = Kafka::connect().await?;
    let topic = kafka.topic("secured", 1).await?;
    let schemas = unique_name("schemas");
    let registry_url = format!("http://127.0.0.1:{}", free_port()?);
    let config = config_file("fanout-secret", &registry_url)?;
    let config_path = config.path().display().to_string();

    // The built-in registry keeps its state in Kafka through the SASL listener.
    let listen = registry_url.trim_start_matches("http://").to_owned();
    let mut registry = fanout()
        .args(["registry", "serve", "--config", &config_path, "--listen", &listen, "--topic", &schemas])
        .stderr(Stdio::null())
        .spawn()?;
    let http = reqwest::Client::new();
    wait_until(Duration::from_secs(30), "the registry to serve", || {
        let request = http.get(format!("{registry_url}/subjects")).send();
        async move { Ok(request.await.is_ok_and(|r| r.status().is_success())) }
    })
    .await?;

    let outcome = async {
        let mut publish = fanout()
            .args(["publish", "post.published", "--json", "-", "--topic", topic.name(), "--config", &config_path])
            .args(["--source", "secured-test"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stdin = publish.stdin.take().context("stdin")?;
        for post_id in 1..=3 {
            let line = format!(
                "{{\"post_id\":{post_id},\"user_id\":9,\"category\":\"JOB\",\"city\":\"Oslo\",\"title\":\"t\",\"published_at\":1}}\n"
            );
            stdin.write_all(line.as_bytes()).await?;
        }
        drop(stdin);
        let published = publish.wait_with_output().await?;
        ensure!(published.status.success(), "publish failed: {}", String::from_utf8_lossy(&published.stderr));
        ensure!(String::from_utf8_lossy(&published.stdout).lines().count() == 3, "three deliveries");

        let tail = fanout()
            .args(["tail", topic.name(), "--from-beginning", "--max", "3", "--idle-timeout", "20"])
            .args(["--config", &config_path])
            .output()
            .await?;
        ensure!(tail.status.success(), "tail failed: {}", String::from_utf8_lossy(&tail.stderr));
        let posts: Vec<i64> = String::from_utf8_lossy(&tail.stdout)
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).map(|v| v["value"]["post_id"].as_i64().unwrap_or(-1)))
            .collect::<Result<_, _>>()?;
        ensure!(posts == [1, 2, 3], "tail read back {posts:?}");

        // `dlq list` reaches the cluster: it answers about the topic, not about the connection.
        let list = fanout()
            .args(["dlq", "list", "--consumer", "nobody", "--topic", topic.name(), "--config", &config_path])
            .output()
            .await?;
        let said = String::from_utf8_lossy(&list.stderr);
        ensure!(!list.status.success() && said.contains("does not exist"), "dlq list said: {said}");

        // A wrong password: every command stops at once and says why.
        let wrong = config_file("not-the-password", &registry_url)?;
        let started = Instant::now();
        let refused = fanout()
            .args(["tail", topic.name(), "--max", "1", "--config", &wrong.path().display().to_string()])
            .output()
            .await?;
        let said = String::from_utf8_lossy(&refused.stderr);
        ensure!(!refused.status.success(), "tail with a wrong password succeeded");
        ensure!(said.contains("refused the credentials") && said.contains("Authentication"), "it said: {said}");
        ensure!(started.elapsed() < Duration::from_secs(8), "took {:?}: not fast", started.elapsed());
        Ok(())
    }
    .await;

    registry.kill().await?;
    kafka.delete_topic(&schemas).await?;
    outcome
}
