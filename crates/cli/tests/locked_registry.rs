//! `fanout registry serve` with its doors locked through its `--config` file's
//! `[registry_server]` section (users hashed by `fanout registry hash-password`, and TLS), and
//! `fanout schema` commands against it: a read-only user is refused a registration by name, a
//! writer registers, a wrong password and an untrusted certificate fail at once, saying so.

use std::{io::Write, process::Stdio, time::Duration};

use anyhow::{ensure, Context};
use fanout_testkit::{unique_name, wait_until, Kafka, TestCertificates};
use tokio::{io::AsyncWriteExt, process::Command};

fn fanout() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanout"));
    command.env("FANOUT_LOG", "error").kill_on_drop(true);
    command
}

async fn hash(password: &str) -> anyhow::Result<String> {
    let mut child =
        fanout().args(["registry", "hash-password"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    stdin.write_all(format!("{password}\n").as_bytes()).await?;
    drop(stdin);
    let output = child.wait_with_output().await?;
    ensure!(output.status.success(), "hash-password failed");
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// A client's file: the registry at `url` as `user`, trusting `ca` when given.
fn client_file(
    url: &str,
    user: &str,
    password: &str,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut file = tempfile::NamedTempFile::new()?;
    writeln!(file, "[kafka]\nbootstrap = \"{}\"", fanout_testkit::bootstrap())?;
    writeln!(
        file,
        "[registry]\nurls = [\"{url}\"]\nusername = \"{user}\"\npassword = \"{password}\"\nmax_retries = 0"
    )?;
    if let Some(ca) = ca {
        writeln!(file, "ca_cert_path = \"{}\"", ca.display())?;
    }
    Ok(file)
}

#[tokio::test]
async fn schema_commands_against_a_registry_with_users_and_tls() -> anyhow::Result<()> {
    let kafka = Kafka::connect().await?;
    let certs = TestCertificates::new()?;
    let schemas = unique_name("schemas");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("https://localhost:{port}");
    let mut server = tempfile::NamedTempFile::new()?;
    writeln!(
        server,
        "[kafka]\nbootstrap = \"{}\"\n[registry_server.tls]\ncert_path = \"{}\"\nkey_path = \"{}\"\n\
         [[registry_server.users]]\nname = \"reader\"\nrole = \"read\"\npassword_hash = \"{}\"\n\
         [[registry_server.users]]\nname = \"writer\"\nrole = \"write\"\npassword_hash = \"{}\"",
        fanout_testkit::bootstrap(),
        certs.cert_path().display(),
        certs.key_path().display(),
        hash("reader-pw").await?,
        hash("writer-pw").await?,
    )?;
    let mut registry = fanout()
        .args(["registry", "serve", "--config", &server.path().display().to_string()])
        .args(["--listen", &format!("127.0.0.1:{port}"), "--topic", &schemas])
        .stderr(Stdio::null())
        .spawn()?;

    let outcome = async {
        let writer = client_file(&url, "writer", "writer-pw", Some(&certs.ca_path()))?;
        let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.ca_path())?)?;
        let http = reqwest::Client::builder().use_rustls_tls().add_root_certificate(ca).build()?;
        wait_until(Duration::from_secs(30), "the registry to serve", || {
            let request = http.get(format!("{url}/subjects")).send();
            async move { Ok(request.await.is_ok_and(|r| r.status() == 401)) }
        })
        .await?;
        let avsc = tempfile::NamedTempFile::new()?;
        std::fs::write(
            avsc.path(),
            r#"{"type":"record","name":"Cli","fields":[{"name":"a","type":"int"}]}"#,
        )?;
        let register = |file: &tempfile::NamedTempFile| {
            fanout()
                .args(["schema", "register", "--subject", "cli-value"])
                .arg(avsc.path())
                .args(["--config", &file.path().display().to_string()])
                .output()
        };

        let reader = client_file(&url, "reader", "reader-pw", Some(&certs.ca_path()))?;
        let refused = register(&reader).await?;
        let said = String::from_utf8_lossy(&refused.stderr);
        ensure!(!refused.status.success(), "a reader registered");
        ensure!(
            said.contains(
                "user 'reader' lacks the write role needed to register a schema under subject cli-value"
            ),
            "it said: {said}"
        );

        let registered = register(&writer).await?;
        ensure!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
        let id: serde_json::Value = serde_json::from_slice(&registered.stdout)?;
        let id = id["id"].as_u64().context("an id")?.to_string();
        let got = fanout()
            .args(["schema", "get", &id, "--config", &reader.path().display().to_string()])
            .output()
            .await?;
        ensure!(got.status.success(), "a reader could not read: {}", String::from_utf8_lossy(&got.stderr));

        let wrong = client_file(&url, "writer", "not-it", Some(&certs.ca_path()))?;
        let refused = fanout()
            .args(["schema", "get", &id, "--config", &wrong.path().display().to_string()])
            .output()
            .await?;
        let said = String::from_utf8_lossy(&refused.stderr);
        ensure!(said.contains("refused the credentials for user 'writer'"), "it said: {said}");

        let untrusting = client_file(&url, "writer", "writer-pw", None)?;
        let refused = fanout()
            .args(["schema", "get", &id, "--config", &untrusting.path().display().to_string()])
            .output()
            .await?;
        let said = String::from_utf8_lossy(&refused.stderr);
        ensure!(
            said.contains("certificate is not trusted") && said.contains("ca_cert_path"),
            "it said: {said}"
        );
        Ok(())
    }
    .await;

    registry.kill().await?;
    kafka.delete_topic(&schemas).await?;
    outcome
}
