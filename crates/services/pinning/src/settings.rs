//! The pinning service's `[service]` section.

use fanout_events::topics;
use serde::{Deserialize, Serialize};

/// What the pinning service does with a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PinningSettings {
    /// The topic `PostPublished` events are read from (tests and migrations override it).
    pub topic: String,
    /// Top-placement credits granted to the author of each HOUSING post.
    pub credits_per_housing_post: i64,
}

impl Default for PinningSettings {
    fn default() -> Self {
        Self { topic: topics::POST_PUBLISHED.to_owned(), credits_per_housing_post: 2 }
    }
}

impl fanout_service::Settings for PinningSettings {
    const SERVICE: &'static str = "pinning";
    const HTTP_PORT: u16 = 9102;

    fn validate(&self) -> Result<(), String> {
        if self.topic.trim().is_empty() {
            return Err("service.topic: must not be empty".into());
        }
        if self.credits_per_housing_post < 1 {
            return Err("service.credits_per_housing_post: must be at least 1".into());
        }
        Ok(())
    }
}
