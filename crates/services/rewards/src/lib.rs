//! The rewards service: the jobs business credits the author of every JOB post with beans.
//!
//! * Effect: one row in `rewards_ledger` per credited event (event id, user, post, amount) and
//!   the user's balance in `rewards_balances`, written in the consumer's transaction together
//!   with the event's dedupe mark. The ledger's primary key is the event id, so even a duplicate
//!   arriving after the dedupe marks expired credits nothing.
//! * Read API: `GET /v1/users/{user_id}/beans` → `{"user_id":7,"balance":20,"ledger_entries":2}`;
//!   404 for a user never credited, 400 for an id that is not an integer.
//! * Configuration: [`RewardsConfig`], `rewards.toml` beside this crate.
//!
//! In process (a demo, a test):
//!
//! ```no_run
//! # async fn example() -> Result<(), fanout_service::ServiceError> {
//! let config: fanout_rewards::RewardsConfig = fanout_config::load(Some("rewards.toml".as_ref()))?;
//! let service = fanout_rewards::build(config).await?;
//! println!("beans at http://{}/v1/users/7/beans", service.http_addr());
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
pub use handler::CreditBeans;
pub use settings::RewardsSettings;

/// The rewards service's configuration file.
pub type RewardsConfig = ServiceConfig<RewardsSettings>;

/// The tables of the rewards service: `migrations/`, version block 101 (see
/// [`fanout_service::migrate`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!();

/// Builds the service: consumer, handler on `service.topic`, read API, tables. Its HTTP address
/// is [`Service::http_addr`]; nothing is consumed until [`Service::run`].
pub async fn build(config: RewardsConfig) -> Result<Service, ServiceError> {
    let settings = config.service.clone();
    Service::build(&config, &MIGRATIONS, |consumer| {
        consumer.handle_topic(settings.topic.clone(), CreditBeans::new(&settings)).routes(router)
    })
    .await
}

/// Builds and runs the service until `shutdown` completes.
pub async fn run(config: RewardsConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
    build(config).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file beside this crate (the one docker-compose mounts) parses with this type.
    #[test]
    fn the_shipped_config_file_loads() {
        let config: RewardsConfig =
            fanout_config::from_toml_str(include_str!("../rewards.toml")).expect("rewards.toml parses");
        assert_eq!(config.consumer.name, "rewards");
        assert_eq!(config.consumer.http.listen, "0.0.0.0:9101");
        assert!(config.consumer.store.url.starts_with("sqlite:"));
        assert_eq!(config.service, RewardsSettings::default());
        config.validate().expect("rewards.toml is valid");
    }
}
