//! The shared runtime of Fanout's consumer services: everything a service's `main` would
//! otherwise repeat, so a service supplies only its settings, tables, handler and read API.
//!
//! * [`ServiceConfig`]: the consumer runtime's keys (`name`, `[kafka]`, `[store]`,
//!   `[processing]`, `[retry]`, `[http]`), `[registry]`, `log`, `log_format`, `[telemetry]`,
//!   `prometheus_targets_dir` and the service's own `[service]` section, loaded with
//!   [`fanout_config::load`] (defaults < TOML file < `FANOUT_` environment); an unknown key
//!   anywhere refuses to start, naming the key.
//! * [`Service::build`]: the consumer with the registry decoder, the service's handler and
//!   routes, its tables migrated; [`Service::run`] until a shutdown future completes, with a
//!   Prometheus file_sd target ([`ScrapeTarget`]) while it runs.
//! * Tables: the service's own `migrations/` folder, embedded with `sqlx::migrate!()` and applied
//!   by [`Service::build`] through [`migrate`], the mechanism the runtime's and the outbox's
//!   tables go through too. The files are numbered in a version block of the service's own
//!   (`1040001_audit_log.sql` is the first of block 104; the table of blocks is in [`migrate`]),
//!   so a service can share its database with other components.
//! * [`main`]: `--config FILE`, tracing ([`init_tracing`], text or JSON, spans over OTLP when
//!   [`TelemetryConfig`] names an endpoint), SIGINT/SIGTERM
//!   ([`shutdown_signal`]) and the exit code.
//! * [`api`]: JSON errors and id parsing shared by the read APIs.
//! * [`Ledger`]: the "one ledger row per event, a running total per user" effect, a batch at a
//!   time.
//!
//! A service binary is then, as in `crates/services/rewards/src/main.rs` (`binary!` needs the
//! binary's own `CARGO_BIN_NAME`, so this compiles there, not as a doctest here):
//!
//! ```text
//! fn main() -> std::process::ExitCode {
//!     fanout_service::main(fanout_service::binary!(), fanout_rewards::build)
//! }
//! ```
//!
//! and a demo runs the same service in process with [`Service::build`] /
//! [`Service::http_addr`] / [`Service::run`].
#![warn(missing_docs)]

pub mod api;
mod cli;
mod config;
mod error;
mod ledger;
mod scrape;
mod service;
mod shutdown;
mod telemetry;

pub use cli::{main, Args, Binary};
pub use config::{LogFormat, ServiceConfig, Settings, TARGETS_DIR_ENV};
pub use error::ServiceError;
pub use fanout_consumer::{axum, require_bearer, sqlx, OPEN_PATHS};
pub use fanout_core::report;
/// The migration mechanism every Fanout table goes through, and its table of version blocks.
pub use fanout_migrate as migrate;
pub use ledger::{Entry, Ledger};
pub use scrape::ScrapeTarget;
pub use service::Service;
pub use shutdown::shutdown_signal;
pub use telemetry::{
    init_tracing, Telemetry, TelemetryConfig, OTLP_ENDPOINT_ENV, OTLP_TRACES_ENDPOINT_ENV, SDK_DISABLED_ENV,
    SERVICE_NAME_ENV,
};

/// The [`Binary`] of the crate this is expanded in: its binary name, version and description.
#[macro_export]
macro_rules! binary {
    () => {
        $crate::Binary {
            name: env!("CARGO_BIN_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            about: env!("CARGO_PKG_DESCRIPTION"),
        }
    };
}
