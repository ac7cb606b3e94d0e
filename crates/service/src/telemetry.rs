//! Log output: text or JSON lines on stderr, filtered by the `log` key.

use tracing_subscriber::EnvFilter;

use crate::{LogFormat, ServiceError};

/// Installs the process-wide tracing subscriber: `filter` is a tracing directive (`info`,
/// `info,fanout_consumer=debug`), `format` text or JSON, output on stderr (stdout stays free for
/// a tool's own output). When a subscriber is already installed (several services in one
/// process, tests), the first one stays and this is not an error.
pub fn init_tracing(filter: &str, format: LogFormat) -> Result<(), ServiceError> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| ServiceError::Config(format!("log: {e} (in {filter:?})")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
    };
    if installed.is_err() {
        tracing::debug!("a tracing subscriber is already installed; keeping it");
    }
    Ok(())
}
