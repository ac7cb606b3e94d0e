//! `fanout new consumer|publisher NAME --event TYPE`: a team's crate, complete and tested, from
//! the templates in `crates/cli/templates` (the crates in `examples/` are their output, and a
//! test keeps it so).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use fanout_core::{Event, EventVisitor};

use crate::events;

/// Write a new service crate.
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A consumer service: handler, settings, config file, first migration, read API and an
    /// integration test against the local stack.
    Consumer(NewArgs),
    /// An upstream service publishing an event type over an HTTP API, with its config file and
    /// an integration test against the local stack.
    Publisher(NewArgs),
}

/// What the new crate is called and what it handles.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The crate, binary and service name (consumer group, config file): lowercase letters,
    /// digits and `-`, starting with a letter.
    name: String,
    /// The event type it consumes or publishes, e.g. `post.published`.
    #[arg(long)]
    event: String,
    /// The default HTTP port (consumer: /metrics, /healthz, /readyz and its read API).
    #[arg(long)]
    port: Option<u16>,
    /// The consumer's migration version block (100 on; one per component sharing a database).
    #[arg(long, default_value_t = 105)]
    block: i64,
    /// Where to write the crate; `./NAME` by default. It must not exist or be empty.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The `fanout` crate's path, written into Cargo.toml as given; by default the checkout
    /// this binary was built from.
    #[arg(long)]
    fanout: Option<String>,
}

/// One template file: its path (with placeholders) and its text.
type Template = (&'static str, &'static str);

macro_rules! templates {
    ($kind:literal: $($path:literal),+ $(,)?) => {
        &[$(($path, include_str!(concat!("../../templates/", $kind, "/", $path)))),+]
    };
}

const CONSUMER: &[Template] = templates!("consumer":
    "Cargo.toml",
    "build.rs",
    "{{name}}.toml",
    "migrations/{{version}}_{{table}}.sql",
    "src/lib.rs",
    "src/main.rs",
    "tests/{{crate}}.rs",
);

const PUBLISHER: &[Template] = templates!("publisher":
    "Cargo.toml",
    "{{name}}.toml",
    "src/lib.rs",
    "src/main.rs",
    "tests/{{crate}}.rs",
);

impl NewCommand {
    /// Writes the crate and says what to do next.
    pub async fn run(self) -> anyhow::Result<()> {
        let (kind, templates, args, default_port) = match self {
            Self::Consumer(args) => ("consumer", CONSUMER, args, 9105),
            Self::Publisher(args) => ("publisher", PUBLISHER, args, 8080),
        };
        let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
        let values = args.values(default_port)?;
        write(&dir, templates, &values)?;
        let name = &args.name;
        println!("wrote the {kind} {name} in {}", dir.display());
        println!("  cd {} && cargo test     # with the local stack up: scripts/stack up", dir.display());
        match kind {
            "consumer" => println!("  cargo run -- --config {name}.toml"),
            _ => {
                println!("  cargo run -- --config {name}.toml    # then POST a {} to /v1/events", args.event)
            }
        }
        Ok(())
    }
}

impl NewArgs {
    /// The placeholders' values, each input checked and named when refused.
    fn values(&self, default_port: u16) -> anyhow::Result<Vec<(&'static str, String)>> {
        check_name(&self.name)?;
        events::check(&self.event)?;
        let (rust_type, topic) =
            fanout_events::visit(&self.event, Describe).ok_or_else(|| events::unknown(&self.event))?;
        if !fanout_migrate::SERVICE_BLOCKS.contains(&self.block) {
            bail!(
                "--block {}: a service's block is {} or above",
                self.block,
                fanout_migrate::SERVICE_BLOCKS.start
            );
        }
        let first = self.block * fanout_migrate::BLOCK_SIZE + 1;
        let crate_name = self.name.replace('-', "_");
        let fanout = match &self.fanout {
            Some(path) => path.clone(),
            None => checkout_fanout()?,
        };
        Ok(vec![
            ("name", self.name.clone()),
            ("Name", camel(&self.name)),
            ("table", format!("{crate_name}_events")),
            ("crate", crate_name),
            ("Event", rust_type),
            ("event_type", self.event.clone()),
            ("topic", topic.to_owned()),
            ("port", self.port.unwrap_or(default_port).to_string()),
            ("block", self.block.to_string()),
            ("version", first.to_string()),
            ("next_version", (first + 1).to_string()),
            ("fanout", fanout),
        ])
    }
}

/// The event type's Rust name (`PostPublished`) and its topic.
struct Describe;

impl EventVisitor for Describe {
    type Output = (String, &'static str);

    fn visit<E: Event>(self) -> Self::Output {
        let path = std::any::type_name::<E>();
        (path.rsplit("::").next().unwrap_or(path).to_owned(), E::TOPIC)
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts_with_letter || !rest_ok || name.ends_with('-') {
        bail!("name {name:?}: use lowercase letters, digits and '-', starting with a letter (e.g. audit, post-service)");
    }
    if name == "fanout" || name.starts_with("fanout-") {
        bail!("name {name:?}: fanout and fanout-* are the platform's own crates");
    }
    Ok(())
}

/// `post-service` → `PostService`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The `fanout` crate of the checkout this binary was built from.
fn checkout_fanout() -> anyhow::Result<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fanout");
    let path = path.canonicalize().with_context(|| {
        format!("the fanout crate is not at {} any more; say where it is with --fanout PATH", path.display())
    })?;
    Ok(path.display().to_string())
}

fn fill(text: &str, values: &[(&'static str, String)]) -> String {
    values.iter().fold(text.to_owned(), |text, (key, value)| text.replace(&format!("{{{{{key}}}}}"), value))
}

/// Writes every file, after checking that `dir` is free, so a refused run writes nothing.
fn write(dir: &Path, templates: &[Template], values: &[(&'static str, String)]) -> anyhow::Result<()> {
    if dir.exists() && dir.read_dir().with_context(|| format!("reading {}", dir.display()))?.next().is_some()
    {
        bail!("{} exists and is not empty; choose another name or --dir", dir.display());
    }
    for (path, text) in templates {
        let path = dir.join(fill(path, values));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, fill(text, values)).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_turned_into_types() {
        for good in ["audit", "post-service", "a2"] {
            check_name(good).expect(good);
        }
        for bad in ["", "Audit", "2fa", "post_service", "post-", "fanout", "fanout-x", "a b"] {
            let err = check_name(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!(camel("post-service"), "PostService");
        assert_eq!(camel("audit"), "Audit");
    }

    #[test]
    fn every_placeholder_of_every_template_has_a_value() {
        let args = NewArgs {
            name: "audit".into(),
            event: "post.published".into(),
            port: None,
            block: 104,
            dir: None,
            fanout: Some("../fanout".into()),
        };
        let values = args.values(9105).expect("values");
        for (path, text) in CONSUMER.iter().chain(PUBLISHER) {
            let filled = fill(&format!("{path}\n{text}"), &values);
            assert!(!filled.contains("{{"), "{path} keeps a placeholder: {filled}");
        }
        let bad_block = NewArgs { block: 7, ..args };
        assert!(bad_block.values(9105).expect_err("block 7").to_string().contains("--block 7"));
    }
}
