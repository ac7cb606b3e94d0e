//! `fanout-stats --config stats.toml`: the stats service.

fn main() -> std::process::ExitCode {
    fanout_service::main(fanout_service::binary!(), fanout_stats::build)
}
