//! The local stack `scripts/stack` runs: the repository, the script, and the broker's process
//! (for the tests that kill it).

use std::path::PathBuf;

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

/// The pid of the broker `scripts/stack` started.
pub fn broker_pid() -> anyhow::Result<String> {
    let path = std::env::var("FANOUT_STACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".stack"))
        .join("kafka/kafka.pid");
    let pid = std::fs::read_to_string(&path)
        .map_err(|e| anyhow::anyhow!("{}: {e} (is the broker run by scripts/stack?)", path.display()))?;
    Ok(pid.trim().to_owned())
}

/// `kill -9` the broker `scripts/stack` started and wait until the process is gone, so a
/// following `scripts/stack up` starts a new one instead of finding the dying one alive.
pub async fn kill_broker() -> anyhow::Result<String> {
    let pid = broker_pid()?;
    let killed = std::process::Command::new("kill").args(["-9", &pid]).status()?;
    anyhow::ensure!(killed.success(), "kill -9 {pid} failed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::process::Command::new("kill")
        .args(["-0", &pid])
        .stderr(std::process::Stdio::null())
        .status()?
        .success()
    {
        anyhow::ensure!(std::time::Instant::now() < deadline, "broker {pid} still alive 30 s after kill -9");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(pid)
}
