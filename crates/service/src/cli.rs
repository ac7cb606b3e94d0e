//! The `main` of every service binary: arguments, configuration, logging, signals, exit code.

use std::{future::Future, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, FromArgMatches, Parser};

use crate::{init_tracing, report, shutdown_signal, Service, ServiceConfig, ServiceError, Settings};

/// Names a service binary in `--help`, `--version` and error messages; build it with
/// [`binary!`](crate::binary) so the values come from the binary's own crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    /// The binary's name, e.g. `fanout-rewards`.
    pub name: &'static str,
    /// Its version.
    pub version: &'static str,
    /// One line on what it does.
    pub about: &'static str,
}

/// The command line every service takes.
#[derive(Debug, Clone, Parser)]
pub struct Args {
    /// The service's TOML configuration; without it, defaults and `FANOUT_*` environment
    /// variables only.
    #[arg(long, short, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs a service binary to its end: parses `--config FILE`, loads the configuration (an
/// unknown key refuses to start, naming the key), installs logging, builds the service with
/// `build`, runs it until SIGINT or SIGTERM and shuts it down gracefully. Returns success only
/// after a clean shutdown; any error is printed on stderr, prefixed with the binary's name.
pub fn main<S, F, Fut>(binary: Binary, build: F) -> ExitCode
where
    S: Settings,
    F: FnOnce(ServiceConfig<S>) -> Fut,
    Fut: Future<Output = Result<Service, ServiceError>>,
{
    let command = Args::command().name(binary.name).version(binary.version).about(binary.about);
    // `--help`, `--version` and usage errors print and exit here, as clap does everywhere.
    let args = match Args::from_arg_matches(&command.get_matches()) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    match run(args, build) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {}", binary.name, report(&error));
            ExitCode::FAILURE
        }
    }
}

fn run<S, F, Fut>(args: Args, build: F) -> Result<(), ServiceError>
where
    S: Settings,
    F: FnOnce(ServiceConfig<S>) -> Fut,
    Fut: Future<Output = Result<Service, ServiceError>>,
{
    let config: ServiceConfig<S> = fanout_config::load(args.config.as_deref())?;
    config.validate()?;
    let telemetry = init_tracing(&config.consumer.name, &config.log, config.log_format, &config.telemetry)?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServiceError::Runtime)?;
    let result = runtime.block_on(async move { build(config).await?.run(shutdown_signal()).await });
    // The spans of the last events, exported before the process ends.
    telemetry.shutdown();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_takes_a_config_file() {
        let args = Args::try_parse_from(["svc", "--config", "x.toml"]).expect("parses");
        assert_eq!(args.config, Some(PathBuf::from("x.toml")));
        assert!(Args::try_parse_from(["svc", "--confg", "x.toml"]).is_err());
    }
}
