//! Scenario 3, serde: encoding and decoding one `PostPublished` in the Confluent wire format with
//! the schema cached, against Confluent's Python `AvroSerializer`/`AvroDeserializer` (same event,
//! same registry, driven in the same run) and against the bare Avro crates without the framing:
//! `serde_avro_fast`, which the encoder and decoder wrap, and `apache-avro`.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context};
use fanout_core::Event;
use fanout_events::{Category, PostPublished};
use serde::Deserialize;

use super::{
    env::Env,
    report::{Comparison, Report, Samples, Target, Unit},
    Plan,
};

/// The Python peer, written next to the run's scratch files so the binary works from anywhere.
const PEER_SCRIPT: &str = include_str!("serde_peer.py");

/// A typical event: what the post service publishes.
fn event() -> PostPublished {
    PostPublished {
        post_id: 1_000_000_042,
        user_id: 7_001,
        category: Category::Job,
        city: "Berlin".into(),
        title: "Barista wanted, weekends, Kreuzberg".into(),
        published_at: 1_764_000_000_000,
    }
}

/// Operations per second of `op` run `n` times.
fn rate(n: usize, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        op()?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Runs the scenario.
pub async fn run(env: &Env, plan: &Plan, python: Option<&Path>, report: &mut Report) -> anyhow::Result<()> {
    let topic = env.name("serde");
    let serde = env.serde()?;
    let encoder = serde.encoder::<PostPublished>(&topic).await?;
    let event = event();
    let payload = encoder.encode(&event)?;
    let body = payload[5..].to_vec();
    // Warms the decoder's writer-schema cache: every timed decode is a cache hit.
    let back: PostPublished = serde.decode(&payload).await?;
    if back != event {
        bail!("the serde does not round-trip the benchmark event");
    }
    let fast_schema: serde_avro_fast::Schema = PostPublished::SCHEMA.parse()?;
    let avro_schema = PostPublished::schema();

    let mut peer = match python {
        Some(python) => Some(PythonPeer::start(env, python, &topic, &event, &payload)?),
        None => None,
    };
    report.note(format!(
        "serde: one {}-byte PostPublished payload; Rust runs {} operations per repetition, the Python peer {}",
        payload.len(),
        plan.serde_ops,
        plan.python_ops
    ));

    let n = plan.serde_ops;
    let names = ["encode", "decode"];
    let mut fanout = [Samples::new(), Samples::new()];
    let mut python_rates = [Samples::new(), Samples::new()];
    let mut fast = [Samples::new(), Samples::new()];
    let mut apache = [Samples::new(), Samples::new()];
    for _ in 0..plan.reps {
        fanout[0].push(rate(n, || {
            std::hint::black_box(encoder.encode(std::hint::black_box(&event))?);
            Ok(())
        })?);
        if let Some(peer) = peer.as_mut() {
            python_rates[0].push(peer.run("encode", plan.python_ops)?);
        }
        fanout[1].push({
            let start = Instant::now();
            for _ in 0..n {
                let decoded: PostPublished = serde.decode(std::hint::black_box(&payload)).await?;
                std::hint::black_box(decoded);
            }
            n as f64 / start.elapsed().as_secs_f64()
        });
        if let Some(peer) = peer.as_mut() {
            python_rates[1].push(peer.run("decode", plan.python_ops)?);
        }
        fast[0].push(rate(n, || {
            // Pre-sized, as the encoder's buffer is: the comparison is about the framing and the
            // wrapper, not about growing a Vec.
            let mut config = serde_avro_fast::ser::SerializerConfig::new(&fast_schema);
            let out = Vec::with_capacity(body.len());
            std::hint::black_box(serde_avro_fast::to_datum(std::hint::black_box(&event), out, &mut config)?);
            Ok(())
        })?);
        fast[1].push(rate(n, || {
            let decoded: PostPublished =
                serde_avro_fast::from_datum_slice(std::hint::black_box(&body), &fast_schema)?;
            std::hint::black_box(decoded);
            Ok(())
        })?);
        apache[0].push(rate(n, || {
            let value = apache_avro::to_value(std::hint::black_box(&event))?;
            std::hint::black_box(apache_avro::to_avro_datum(avro_schema, value)?);
            Ok(())
        })?);
        apache[1].push(rate(n, || {
            let value =
                apache_avro::from_avro_datum(avro_schema, &mut std::hint::black_box(&body[..]), None)?;
            let decoded: PostPublished = apache_avro::from_value(&value)?;
            std::hint::black_box(decoded);
            Ok(())
        })?);
    }
    if let Some(peer) = peer {
        peer.stop();
    }

    for (i, op) in names.iter().enumerate() {
        let fanout_name = format!("AvroSerde {op}");
        if python.is_some() {
            report.compare(Comparison {
                scenario: "3 serde".into(),
                metric: format!("{op}, framed, ops/s"),
                fanout: (fanout_name.clone(), fanout[i].clone()),
                peer: (
                    format!("Python Avro{}", if i == 0 { "Serializer" } else { "Deserializer" }),
                    python_rates[i].clone(),
                ),
                unit: Unit::PerSecond,
                target: Some(Target::AtLeast(20.0)),
                floor: None,
            });
        }
        report.compare(Comparison {
            scenario: "3 serde".into(),
            metric: format!("{op}, ops/s"),
            fanout: (fanout_name.clone(), fanout[i].clone()),
            peer: ("bare serde_avro_fast".into(), fast[i].clone()),
            unit: Unit::PerSecond,
            target: Some(Target::AtLeast(0.9)),
            floor: None,
        });
        report.compare(Comparison {
            scenario: "3 serde".into(),
            metric: format!("{op}, ops/s"),
            fanout: (fanout_name, fanout[i].clone()),
            peer: ("bare apache-avro".into(), apache[i].clone()),
            unit: Unit::PerSecond,
            target: None,
            floor: None,
        });
    }
    if python.is_none() {
        report.note(
            "serde: the Python peer was skipped: no virtualenv with confluent-kafka; make it with \
             `make .venv/.installed` (or pass --python)",
        );
    }
    Ok(())
}

/// Confluent's Python serializer running `serde_peer.py`, driven one command per repetition.
struct PythonPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

#[derive(Deserialize)]
struct Ready {
    same_bytes: bool,
    decodes_rust_payload: bool,
}

#[derive(Deserialize)]
struct Timed {
    n: usize,
    seconds: f64,
}

impl PythonPeer {
    fn start(
        env: &Env,
        python: &Path,
        topic: &str,
        event: &PostPublished,
        payload: &[u8],
    ) -> anyhow::Result<Self> {
        let script = env.work_dir.join("serde_peer.py");
        std::fs::write(&script, PEER_SCRIPT)?;
        let schema = env.work_dir.join("post_published.avsc");
        std::fs::write(&schema, PostPublished::SCHEMA)?;
        let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
        let mut child = Command::new(python)
            .arg(&script)
            .args(["--registry", &env.registry, "--topic", topic])
            .arg("--schema")
            .arg(&schema)
            .args(["--event", &serde_json::to_string(event)?, "--payload", &hex])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the Python peer with {}", python.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the Python peer has no pipes");
        };
        let mut peer = Self { child, stdin, stdout: BufReader::new(stdout) };
        let ready: Ready = serde_json::from_str(&peer.line()?).context("the Python peer's greeting")?;
        if !ready.decodes_rust_payload {
            bail!("Confluent's Python deserializer does not read the Rust encoder's payload");
        }
        if !ready.same_bytes {
            eprintln!("fanout bench: note: the Python serializer's bytes differ from the Rust encoder's");
        }
        Ok(peer)
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            bail!("the Python peer exited ({status}); run it by hand to see why");
        }
        Ok(line)
    }

    /// Operations per second of `op` over `n` operations.
    fn run(&mut self, op: &str, n: usize) -> anyhow::Result<f64> {
        writeln!(self.stdin, "{op} {n}")?;
        self.stdin.flush()?;
        let timed: Timed = serde_json::from_str(&self.line()?).context("the Python peer's answer")?;
        Ok(timed.n as f64 / timed.seconds)
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}
