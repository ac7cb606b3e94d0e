//! The rewards service's `[service]` section.

use fanout_events::{topics, Category};
use serde::{Deserialize, Serialize};

/// What the rewards service does with a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardsSettings {
    /// The topic `PostPublished` events are read from (tests and migrations override it).
    pub topic: String,
    /// Beans credited to the author of each JOB post.
    pub beans_per_job_post: i64,
}

impl Default for RewardsSettings {
    fn default() -> Self {
        Self { topic: topics::POST_PUBLISHED.to_owned(), beans_per_job_post: 10 }
    }
}

impl fanout_service::Settings for RewardsSettings {
    const SERVICE: &'static str = "rewards";
    const HTTP_PORT: u16 = 9101;

    fn validate(&self) -> Result<(), String> {
        if self.topic.trim().is_empty() {
            return Err("service.topic: must not be empty".into());
        }
        if self.beans_per_job_post < 1 {
            return Err(format!(
                "service.beans_per_job_post: must be at least 1 (a {} post always earns beans)",
                Category::Job
            ));
        }
        Ok(())
    }
}
