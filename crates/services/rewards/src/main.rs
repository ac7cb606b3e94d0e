//! `fanout-rewards --config rewards.toml`: the rewards service.

fn main() -> std::process::ExitCode {
    fanout_service::main(fanout_service::binary!(), fanout_rewards::build)
}
