//! The stats service's `[service]` section.

use fanout_events::topics;
use serde::{Deserialize, Serialize};

/// Where the stats service reads posts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatsSettings {
    /// The topic `PostPublished` events are read from (tests and migrations override it).
    pub topic: String,
}

impl Default for StatsSettings {
    fn default() -> Self {
        Self { topic: topics::POST_PUBLISHED.to_owned() }
    }
}

impl fanout_service::Settings for StatsSettings {
    const SERVICE: &'static str = "stats";
    const HTTP_PORT: u16 = 9103;

    fn validate(&self) -> Result<(), String> {
        if self.topic.trim().is_empty() {
            return Err("service.topic: must not be empty".into());
        }
        Ok(())
    }
}
