//! `{{name}} --config {{name}}.toml`: runs until SIGTERM or Ctrl-C, then drains and exits 0.

fn main() -> std::process::ExitCode {
    fanout::main(fanout::binary!(), {{crate}}::build)
}
