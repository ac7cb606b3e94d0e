//! The pinning service: the housing business grants the author of every HOUSING post
//! top-placement ("pin") credits.
//!
//! * Effect: one row in `pinning_grants` per granting event (event id, user, post, credits) and
//!   the user's credits in `pinning_credits`, written in the consumer's transaction together
//!   with the event's dedupe mark. Grants are keyed by event id, so even a duplicate arriving
//!   after the dedupe marks expired grants nothing.
//! * Read API: `GET /v1/users/{user_id}/pins` → `{"user_id":7,"credits":4}`; 404 for a user never
//!   granted credits, 400 for an id that is not an integer.
//! * Configuration: [`PinningConfig`], `pinning.toml` beside this crate.
//!
//! In process (a demo, a test):
//!
//! ```no_run
//! # async fn example() -> Result<(), fanout_service::ServiceError> {
//! let config: fanout_pinning::PinningConfig = fanout_config::load(Some("pinning.toml".as_ref()))?;
//! let service = fanout_pinning::build(config).await?;
//! println!("pins at http://{}/v1/users/7/pins", service.http_addr());
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
pub use handler::GrantPins;
pub use settings::PinningSettings;

/// The pinning service's configuration file.
pub type PinningConfig = ServiceConfig<PinningSettings>;

/// The tables of the pinning service: `migrations/`, version block 102 (see
/// [`fanout_service::migrate`]).
pub static MIGRATIONS: Migrator = sqlx::migrate!();

/// Builds the service: consumer, handler on `service.topic`, read API, tables. Its HTTP address
/// is [`Service::http_addr`]; nothing is consumed until [`Service::run`].
pub async fn build(config: PinningConfig) -> Result<Service, ServiceError> {
    let settings = config.service.clone();
    Service::build(&config, &MIGRATIONS, |consumer| {
        consumer.handle_topic(settings.topic.clone(), GrantPins::new(&settings)).routes(router)
    })
    .await
}

/// Builds and runs the service until `shutdown` completes.
pub async fn run(config: PinningConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServiceError> {
    build(config).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file beside this crate (the one docker-compose mounts) parses with this type.
    #[test]
    fn the_shipped_config_file_loads() {
        let config: PinningConfig =
            fanout_config::from_toml_str(include_str!("../pinning.toml")).expect("pinning.toml parses");
        assert_eq!(config.consumer.name, "pinning");
        assert_eq!(config.consumer.http.listen, "0.0.0.0:9102");
        assert!(config.consumer.store.url.starts_with("sqlite:"));
        assert_eq!(config.service, PinningSettings::default());
        config.validate().expect("pinning.toml is valid");
    }
}
