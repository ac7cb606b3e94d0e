//! Where the demo's log lines go: a file of their own, so that the terminal shows the demo's own
//! progress and summary only. The services, the registry and librdkafka log for operators; in the
//! middle of the progress bars a first-time reader cannot tell their lines from trouble (every
//! poison record the demo sends on purpose is an ERROR there, dead-lettered by each consumer).

use std::{path::Path, sync::Mutex};

use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Sends every log line of this process to a new file at `path`: tracing's, and librdkafka's
/// (the Kafka client logs through the `log` crate, which the subscriber takes in). The level is
/// `FANOUT_LOG`'s, `info` by default.
pub fn to_file(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create the log file {}", path.display()))?;
    let filter = EnvFilter::try_from_env("FANOUT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot send the logs to {}: {e}", path.display()))
}
