//! The stats service: every post updates its author's counters by category and by city. The
//! SECONDHAND counters are the second-hand business's user statistics.
//!
//! * Effect: `stats_by_category` and `stats_by_city` counters, incremented in the consumer's
//!   transaction together with the event's dedupe mark (the runtime's dedupe is what makes a
//!   redelivered post count once).
//! * Read API: `GET /v1/users/{user_id}/stats` →
//!   `{"user_id":7,"posts":3,"by_category":{"HOUSING":0,"JOB":1,"OTHER":0,"SECONDHAND":2},"by_city":{"Lyon":3}}`;
//!   404 for a user who never posted, 400 for an id that is not an integer.
//! * Configuration: [`StatsConfig`], `stats.toml` beside this crate.
//!
//! In process (a demo, a test):
//!
//! ```no_run
//! # async fn example() -> Result<(), fanout_service::ServiceError> {
//! let config: fanout_stats::StatsConfig = fanout_config::load(Some("stats.toml".as_ref()))?;
//! let service = fanout_stats::build(config).await?;
//! println!("stats at http://{}/v1/users/7/stats", service.http_addr());
//! service.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![warn(missing_docs)]

mod api;
mod handler;
mod settings;

use std::future::Future;

use fanout_service::{Service, ServiceConfig, ServiceError};
use sqlx::migrate::Migrator;

pub use api::router;
pub use handler::CountPosts;
pub use settings::StatsSettings;

/// The stats service's configuration file.
pub type StatsConfig = ServiceConfig<StatsSettings>;

/// The tables of the stats service: `migrations/`, version block 103 (see
/// [`fanout_service::migrate`]). There is no total table: a post has exactly one category,
/// so a user's total is the sum of their category counters, and the read API gets every number
/// from one statement (one snapshot).
pub static MIGRATIONS: Migrator = sqlx::migrate!();

/// Builds the service: consumer, handler on `service.topic`, read API, tables. Its HTTP address
/// is [`Service::http_addr`]; nothing is consumed until [`Service::run`].
pub async fn build(config: StatsConfig) -> Result<Service, ServiceError> {
    let topic = config.service.topic.clone();
    Service::build(&config, &MIGRATIONS, |consumer| consumer.handle_topic(topic, CountPosts).routes(router))
        .await
}

/// Builds and runs the service until `shutdown` completes.
pub async fn run(config: StatsConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
    build(config).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file beside this crate (the one docker-compose mounts) parses with this type.
    #[test]
    fn the_shipped_config_file_loads() {
        let config: StatsConfig =
            fanout_config::from_toml_str(include_str!("../stats.toml")).expect("stats.toml parses");
        assert_eq!(config.consumer.name, "stats");
        assert_eq!(config.consumer.http.listen, "0.0.0.0:9103");
        assert!(config.consumer.store.url.starts_with("sqlite:"));
        assert_eq!(config.service, StatsSettings::default());
        config.validate().expect("stats.toml is valid");
    }
}
