//! `fanout-pinning --config pinning.toml`: the pinning service.

fn main() -> std::process::ExitCode {
    fanout_service::main(fanout_service::binary!(), fanout_pinning::build)
}
