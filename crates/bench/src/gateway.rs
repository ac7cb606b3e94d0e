//! Scenario 9, the callback gateway: `fanout-gateway` as a child process, beside the bare axum
//! handler that publishes without verifying or deduplicating ([`super::gateway_peer`], a child
//! process too), so the ratio shows what the gateway's safety costs.
//!
//! * **Set-up.** The gateway runs from a generated config file: one generic-HMAC source (`pay`:
//!   `X-Signature` = hex HMAC-SHA256 of `{timestamp}.{body}`, `X-Timestamp`; ids in the body), a
//!   topic of its own, a rejects topic, the dedupe store in the run's scratch PostgreSQL
//!   database, everything else at its defaults. The peer publishes to a topic of its own with the
//!   same partitions. Both get the same requests: every one a new callback (its own provider
//!   event id and correlation id), bodies written and signed before the timed part.
//! * **Throughput** (closed loop): a number of keep-alive HTTP/1.1 connections (64 and 256)
//!   each send the next request as soon as the last is answered, for a fixed time; 2xx answers
//!   per second. The gateway answers each request after three round trips in a row (dedupe
//!   lookup, Kafka, dedupe record), so with few connections its rate is bound by latency, and
//!   more connections fill its batches: its rate keeps rising well past the peer's knee.
//! * **Latency** (open loop): requests at a fixed rate, each sent at its scheduled time whatever
//!   became of the earlier ones, measured from that time to its 2xx (see [`super::load`]).
//! * **Honesty checks**, after every run: any answer but 2xx (or none) makes the run invalid
//!   (it is reported and left out of the figures, with its pair); the records the run added to
//!   the side's topic must equal its 2xx answers, and the gateway's `accepted` count must too
//!   (no duplicate, nothing published twice or answered without a record).
//!
//! `BENCH_GATEWAY_LOG` sets the gateway's log filter (`warn` by default); its log and the peer's
//! are kept in the temporary directory and named in the notes. `BENCH_GATEWAY_CONNECTIONS`
//! (comma-separated) overrides the closed loop's connection counts, to find the knee.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use hyper::header::{HeaderName, HeaderValue};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sha2::Sha256;

use super::{
    child::{bucket_quantile, counter, free_addr, labelled_buckets, Launch, Service},
    env::{cpu_time, Env},
    load::{self, Endpoint, Errors, Prepared},
    report::{Limit, Report, Samples, Target, Unit},
    Plan,
};

/// Partitions of both sides' topics: the gateway's default.
const PARTITIONS: i32 = 6;
/// The source's name, its URL path segment.
const SOURCE: &str = "pay";
/// The source's shared secret.
const SECRET: &str = "bench-gateway-shared-secret";
/// A closed-loop run's requests are prepared for up to this many answers per second; a run
/// that uses them up fails and says so (the peer answered 47,000/s at 256 connections here).
const MAX_RATE: f64 = 60_000.0;
/// Connections of the open-loop runs: at 1,000 req/s, enough for answers of up to 64 ms
/// without a request waiting for a free one.
const LATENCY_CONNECTIONS: usize = 64;
/// Each side's first run after its start, not measured: connections, metadata, pools, caches.
const WARM_UP: Duration = Duration::from_secs(1);
/// The issue's targets on this machine.
const MIN_RATE: f64 = 5_000.0;
const MAX_P99_MS: f64 = 25.0;

/// A provider's callback body: a payment result of a typical size (~220 bytes), with ids unique
/// to `tag` and `n`.
fn body(tag: &str, n: usize) -> String {
    format!(
        r#"{{"id":"evt_{tag}_{n:08}","request_id":"order-{tag}-{n:08}","status":"SUCCESS","amount":1299,"currency":"EUR","method":"card","merchant_id":"m-100234","paid_at":"2026-11-30T05:00:00Z","payer":{{"country":"DE","email_hash":"7c4a8d09ca3762af"}}}}"#
    )
}

/// `count` callbacks signed now, as the provider would send them.
fn prepare(tag: &str, count: usize) -> anyhow::Result<Vec<Prepared>> {
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs().to_string();
    let timestamp_value = HeaderValue::try_from(&timestamp)?;
    let signature_name = HeaderName::from_static("x-signature");
    let timestamp_name = HeaderName::from_static("x-timestamp");
    // HMAC takes a key of any length; this cannot fail.
    let key = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    (0..count)
        .map(|n| {
            let body = body(tag, n);
            let mut mac = key.clone();
            mac.update(timestamp.as_bytes());
            mac.update(b".");
            mac.update(body.as_bytes());
            let signature = HeaderValue::try_from(hex::encode(mac.finalize().into_bytes()))?;
            Ok::<_, anyhow::Error>(Prepared {
                body: Bytes::from(body),
                headers: vec![
                    (signature_name.clone(), signature),
                    (timestamp_name.clone(), timestamp_value.clone()),
                ],
            })
        })
        .collect()
}

/// The gateway's config file: one generic-HMAC source, its topics and store, both ports;
/// everything else at the gateway's defaults (8 store connections, 5 s publish timeout, ...).
fn gateway_toml(env: &Env, listen: &str, topic: &str, rejects: &str, store: &str) -> String {
    format!(
        r#"name = "fanout-bench-gateway"
listen = "{listen}"
rejects_topic = "{rejects}"
partitions = {PARTITIONS}

[kafka]
bootstrap = "{bootstrap}"

[registry]
urls = ["{registry}"]

[store]
url = "{store}"

[sources.{SOURCE}]
verify = "hmac"
secrets = ["{SECRET}"]
signature_header = "X-Signature"
timestamp_header = "X-Timestamp"
signed_payload = "{{timestamp}}.{{body}}"
topic = "{topic}"
event_id = "body:/id"
correlation_id = "body:/request_id"
event_type = "body:/status"
"#,
        bootstrap = env.bootstrap,
        registry = env.registry,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Peer,
    Gateway,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Peer => "peer",
            Side::Gateway => "gateway",
        }
    }
}

/// One side's running server.
struct Server {
    side: Side,
    service: Service,
    endpoint: Endpoint,
    topic: String,
    log: std::path::PathBuf,
}

/// The `fanout_gateway_requests_total` series of the bench's source.
fn requests_series(outcome: &str) -> String {
    format!("fanout_gateway_requests_total{{outcome=\"{outcome}\",source=\"{SOURCE}\"}}")
}

const OWN_LATENCY: &str = "fanout_gateway_accept_duration_seconds";
const OWN_LABELS: &str = "outcome=\"accepted\",source=\"pay\",";

impl Server {
    /// The gateway's `/metrics`; empty for the peer.
    async fn metrics(&self) -> anyhow::Result<String> {
        match self.side {
            Side::Gateway => self.service.metrics().await,
            Side::Peer => Ok(String::new()),
        }
    }
}

/// Sums of the partitions' end offsets: records in a topic (no transactions write to these
/// topics, so every offset is a record).
struct Ends {
    consumer: BaseConsumer,
}

impl Ends {
    fn new(env: &Env) -> anyhow::Result<Self> {
        let mut config = env.client_config();
        config.set("group.id", env.group("gateway-ends"));
        Ok(Self { consumer: config.create()? })
    }

    fn records(&self, topic: &str) -> anyhow::Result<i64> {
        tokio::task::block_in_place(|| {
            let mut total = 0;
            for partition in 0..PARTITIONS {
                let (low, high) =
                    self.consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
                total += high - low;
            }
            Ok(total)
        })
    }
}

/// What one measured run showed, and whether it counts.
struct Checked {
    ok: u64,
    errors: Errors,
    problems: Vec<String>,
}

impl Checked {
    fn valid(&self) -> bool {
        self.errors.total() == 0 && self.problems.is_empty()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.errors.total() > 0 {
            parts.push(format!("{} not 2xx ({})", self.errors.total(), self.errors.describe()));
        }
        parts.extend(self.problems.iter().cloned());
        parts.join("; ")
    }
}

/// Checks a run's 2xx answers against the records it added to the topic and, for the gateway,
/// against its own `accepted` and `duplicate` counts.
async fn check(
    server: &Server,
    ends: &Ends,
    (records_before, metrics_before): (i64, &str),
    ok: u64,
    errors: Errors,
) -> anyhow::Result<Checked> {
    let records = ends.records(&server.topic)? - records_before;
    let mut problems = Vec::new();
    if records != ok as i64 {
        problems.push(format!("{records} records on the topic for {ok} 2xx answers"));
    }
    if server.side == Side::Gateway {
        let metrics = server.metrics().await?;
        let delta = |outcome: &str| {
            counter(&metrics, &requests_series(outcome)) - counter(metrics_before, &requests_series(outcome))
        };
        let (accepted, duplicate) = (delta("accepted"), delta("duplicate"));
        if accepted != ok as f64 || duplicate != 0.0 {
            problems.push(format!(
                "the gateway counted {accepted} accepted and {duplicate} duplicates for {ok} 2xx answers"
            ));
        }
    }
    Ok(Checked { ok, errors, problems })
}

/// One throughput run: 2xx/s, server CPU µs and client CPU µs per request.
struct Throughput {
    rate: f64,
    server_cpu_us: f64,
    client_cpu_us: f64,
    checked: Checked,
}

async fn throughput(
    server: &Server,
    ends: &Ends,
    tag: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let requests = Arc::new(prepare(tag, (MAX_RATE * duration.as_secs_f64()) as usize)?);
    let before = (ends.records(&server.topic)?, server.metrics().await?);
    let (server_cpu, client_cpu) = (server.service.cpu_time()?, cpu_time()?);
    let run = load::closed_loop(&server.endpoint, requests, connections, duration).await?;
    let server_cpu = server.service.cpu_time()?.saturating_sub(server_cpu);
    let client_cpu = cpu_time()?.saturating_sub(client_cpu);
    let answered = (run.ok + run.errors.total()).max(1) as f64;
    let checked = check(server, ends, (before.0, &before.1), run.ok, run.errors.clone()).await?;
    Ok(Throughput {
        rate: run.rate(),
        server_cpu_us: server_cpu.as_secs_f64() * 1e6 / answered,
        client_cpu_us: client_cpu.as_secs_f64() * 1e6 / answered,
        checked,
    })
}

/// One latency run: p50, p99, p99.9 in ms, and the gateway's own p99 (bucket bound, ms).
struct Latency {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    own_p99: Option<f64>,
    checked: Checked,
}

async fn latency(
    server: &Server,
    ends: &Ends,
    tag: &str,
    connections: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<Latency> {
    let requests = Arc::new(prepare(tag, (rate * duration.as_secs_f64()) as usize)?);
    let before = (ends.records(&server.topic)?, server.metrics().await?);
    let run = load::open_loop(&server.endpoint, requests, connections, rate).await?;
    let after = server.metrics().await?;
    let own_p99 = bucket_quantile(
        &labelled_buckets(&before.1, OWN_LATENCY, OWN_LABELS),
        &labelled_buckets(&after, OWN_LATENCY, OWN_LABELS),
        0.99,
    )
    .map(|seconds| seconds * 1_000.0);
    let ms = |q: f64| run.latency.value_at_quantile(q) as f64 / 1_000.0;
    let (p50, p99, p999, max) = (ms(0.5), ms(0.99), ms(0.999), run.latency.max() as f64 / 1_000.0);
    let checked = check(server, ends, (before.0, &before.1), run.ok, run.errors.clone()).await?;
    Ok(Latency { p50, p99, p999, max, own_p99, checked })
}

/// Runs the scenario.
pub async fn run(env: &Env, plan: &Plan, report: &mut Report) -> anyhow::Result<()> {
    let Some(store) = env.postgres_store().await? else {
        report.note("9 gateway: skipped (--database-url none): the gateway's dedupe store is PostgreSQL");
        return Ok(());
    };
    let gateway_topic = env.topic("gateway-callbacks", PARTITIONS).await?;
    let peer_topic = env.topic("gateway-peer", PARTITIONS).await?;
    let rejects = env.name("gateway-rejects");
    env.adopt_topic(&rejects);

    let gateway_listen = free_addr()?;
    let config_file = env.work_dir.join(format!("{}.toml", env.name("gateway")));
    std::fs::write(
        &config_file,
        gateway_toml(env, &gateway_listen.to_string(), &gateway_topic, &rejects, &store),
    )?;
    // Kept after the run (the scratch directory is not): a missed target sends one there.
    let gateway_log = std::env::temp_dir().join(format!("{}.log", env.name("gateway")));
    let gateway_launch = Launch::sibling("fanout-gateway", gateway_log.clone())?
        .args(["--config".to_owned(), config_file.display().to_string()])
        .env("FANOUT_LOG", std::env::var("BENCH_GATEWAY_LOG").unwrap_or_else(|_| "warn".into()));
    let peer_listen = free_addr()?;
    let peer_log = std::env::temp_dir().join(format!("{}.log", env.name("gateway-peer")));
    let peer_launch = Launch::current(peer_log.clone())?
        .args([
            "bench",
            "gateway-peer",
            "--listen",
            &peer_listen.to_string(),
            "--bootstrap",
            &env.bootstrap,
            "--topic",
            &peer_topic,
        ])
        .env("FANOUT_LOG", "warn");

    let mut gateway = gateway_launch.spawn()?;
    gateway.ready(Duration::from_secs(60)).await.with_context(|| format!("see {}", gateway_log.display()))?;
    let mut peer = peer_launch.spawn()?;
    peer.ready(Duration::from_secs(30)).await.with_context(|| format!("see {}", peer_log.display()))?;
    println!("  fanout-gateway pid {}, peer pid {} (for perf record -p)", gateway.pid(), peer.pid());
    let path = format!("/callbacks/{SOURCE}");
    let servers = [
        Server {
            side: Side::Peer,
            service: peer,
            endpoint: Endpoint::new(peer_listen, &path)?,
            topic: peer_topic,
            log: peer_log,
        },
        Server {
            side: Side::Gateway,
            service: gateway,
            endpoint: Endpoint::new(gateway_listen, &path)?,
            topic: gateway_topic,
            log: gateway_log,
        },
    ];
    let result = measure(env, plan, report, &servers).await;
    for mut server in servers {
        if let Err(error) = server.service.terminate().await {
            eprintln!("fanout bench: {error:#}");
        }
    }
    result
}

/// Closed-loop connections: `BENCH_GATEWAY_CONNECTIONS` (comma-separated) or the plan's.
fn closed_loop_connections(plan: &Plan) -> anyhow::Result<Vec<usize>> {
    match std::env::var("BENCH_GATEWAY_CONNECTIONS") {
        Ok(value) => value
            .split(',')
            .map(|n| {
                n.trim().parse().context("BENCH_GATEWAY_CONNECTIONS: numbers of connections, comma-separated")
            })
            .collect(),
        Err(_) => Ok(plan.gateway_connections.clone()),
    }
}

fn invalid_suffix(checked: &Checked) -> String {
    if checked.valid() {
        String::new()
    } else {
        format!(" INVALID: {}", checked.describe())
    }
}

/// Each figure's samples, `[peer, gateway]`.
type Pair = [Samples; 2];

async fn measure(env: &Env, plan: &Plan, report: &mut Report, servers: &[Server; 2]) -> anyhow::Result<()> {
    let concurrencies = closed_loop_connections(plan)?;
    let (rate, reps) = (plan.gateway_rate, plan.gateway_reps);
    let ends = Ends::new(env)?;
    for server in servers {
        let tag = format!("warm-{}", server.side.label());
        let warm = throughput(server, &ends, &tag, LATENCY_CONNECTIONS, WARM_UP).await?;
        if !warm.checked.valid() {
            report.note(format!("9 gateway: {} warm-up: {}", server.side.label(), warm.checked.describe()));
        }
    }

    let mut rates: Vec<Pair> = vec![Pair::default(); concurrencies.len()];
    let mut server_cpu: Vec<Pair> = vec![Pair::default(); concurrencies.len()];
    let mut client_cpu = Vec::new();
    let (mut p50, mut p99, mut p999) = (Pair::default(), Pair::default(), Pair::default());
    let mut own99 = Samples::new();
    let mut invalid = Vec::new();
    let mut latency_notes = Vec::new();
    let mut answered = [0u64; 2];
    for rep in 0..reps {
        // Who goes first alternates, so a drift in the machine's load favours neither.
        let order: [usize; 2] = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
        for (c, &connections) in concurrencies.iter().enumerate() {
            let mut runs: [Option<Throughput>; 2] = [None, None];
            for i in order {
                let server = &servers[i];
                let tag = format!("t{rep}c{connections}{}", server.side.label());
                let run =
                    throughput(server, &ends, &tag, connections, plan.gateway_throughput_duration).await?;
                println!(
                    "  rep {rep} {:<8} closed loop, {connections:>3} connections: {:>6.0} 2xx/s{}",
                    server.side.label(),
                    run.rate,
                    invalid_suffix(&run.checked)
                );
                answered[i] += run.checked.ok;
                runs[i] = Some(run);
            }
            let [Some(peer), Some(gateway)] = &runs else { continue };
            if peer.checked.valid() && gateway.checked.valid() {
                for (i, run) in [peer, gateway].into_iter().enumerate() {
                    rates[c][i].push(run.rate);
                    server_cpu[c][i].push(run.server_cpu_us);
                }
                client_cpu.push(format!("{:.1}/{:.1}", peer.client_cpu_us, gateway.client_cpu_us));
            } else {
                invalid.push(format!(
                    "rep {rep} closed loop ({connections} connections) left out: peer {}, gateway {}",
                    peer.checked.describe(),
                    gateway.checked.describe()
                ));
            }
        }

        let mut runs: [Option<Latency>; 2] = [None, None];
        for i in order {
            let server = &servers[i];
            let tag = format!("l{rep}{}", server.side.label());
            let duration = plan.gateway_latency_duration;
            let run = latency(server, &ends, &tag, LATENCY_CONNECTIONS, rate, duration).await?;
            println!(
                "  rep {rep} {:<8} {rate:.0} req/s: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms{}",
                server.side.label(),
                run.p50,
                run.p99,
                run.p999,
                run.max,
                invalid_suffix(&run.checked)
            );
            answered[i] += run.checked.ok;
            runs[i] = Some(run);
        }
        let [Some(peer), Some(gateway)] = &runs else { continue };
        if peer.checked.valid() && gateway.checked.valid() {
            for (i, run) in [peer, gateway].into_iter().enumerate() {
                p50[i].push(run.p50);
                p99[i].push(run.p99);
                p999[i].push(run.p999);
            }
            if let Some(own) = gateway.own_p99 {
                own99.push(own);
            }
            latency_notes.push(format!("rep {rep}: max {:.1} ms (peer {:.1} ms)", gateway.max, peer.max));
        } else {
            invalid.push(format!(
                "rep {rep} latency left out: peer {}, gateway {}",
                peer.checked.describe(),
                gateway.checked.describe()
            ));
        }
    }

    let row = |metric: String, samples: &Pair, unit: Unit, bound: Option<Target>| Limit {
        scenario: "9 gateway".into(),
        metric,
        fanout: ("fanout-gateway (HMAC)".into(), samples[1].clone()),
        peer: Some(("bare axum → RecordProducer".into(), samples[0].clone())),
        unit,
        bound,
    };
    for (c, connections) in concurrencies.iter().enumerate() {
        report.limit(row(
            format!("verified callbacks/s, closed loop, {connections} connections"),
            &rates[c],
            Unit::PerSecond,
            Some(Target::AtLeast(MIN_RATE)),
        ));
    }
    let at = format!("{rate:.0} req/s open loop");
    report.limit(row(format!("request → 2xx p50, {at}"), &p50, Unit::Millis, None));
    report.limit(row(
        format!("request → 2xx p99, {at}"),
        &p99,
        Unit::Millis,
        Some(Target::AtMost(MAX_P99_MS)),
    ));
    report.limit(row(format!("request → 2xx p99.9, {at}"), &p999, Unit::Millis, None));
    if own99.len() > 0 {
        report.limit(Limit {
            metric: format!("arrival → 2xx p99, {at} (own histogram, bucket bound)"),
            peer: None,
            ..row(String::new(), &[Samples::new(), own99], Unit::Millis, None)
        });
    }
    for (c, connections) in concurrencies.iter().enumerate() {
        report.limit(row(
            format!("server CPU per request, closed loop, {connections} connections"),
            &server_cpu[c],
            Unit::Micros,
            None,
        ));
    }
    report.note(format!(
        "9 gateway: {PARTITIONS} partitions per side; keep-alive HTTP/1.1 connections (hyper): closed loop {:?} \
         per side and connection count, open loop {rate:.0} req/s for {:?} per side over {LATENCY_CONNECTIONS} \
         connections (measured from each request's scheduled send time to its 2xx), {reps} repetition(s), peer \
         and gateway alternating; every request a new callback (~220-byte JSON, signed before the timed part); the \
         gateway's store is the scratch PostgreSQL database; 2xx answers: gateway {}, peer {}, each matched by the \
         records on its topic; load generator CPU per request, closed loop (peer/gateway): {}; logs: {} and {}",
        plan.gateway_throughput_duration,
        plan.gateway_latency_duration,
        answered[1],
        answered[0],
        if client_cpu.is_empty() { "-".to_owned() } else { format!("{} µs", client_cpu.join(", ")) },
        servers[1].log.display(),
        servers[0].log.display(),
    ));
    if !latency_notes.is_empty() {
        report.note(format!("9 gateway latency: {}", latency_notes.join("; ")));
    }
    if !invalid.is_empty() {
        report.note(format!("9 gateway INVALID runs (not in the figures): {}", invalid.join("; ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepared_callbacks_are_distinct_and_sign_timestamp_dot_body() {
        let prepared = prepare("t", 3).expect("prepares");
        let header = |p: &Prepared, name: &str| {
            p.headers.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.to_str().ok()).map(str::to_owned)
        };
        for (n, p) in prepared.iter().enumerate() {
            let body: serde_json::Value = serde_json::from_slice(&p.body).expect("JSON");
            assert_eq!(body["id"], format!("evt_t_{n:08}"));
            assert_eq!(body["request_id"], format!("order-t-{n:08}"));
            let timestamp = header(p, "x-timestamp").expect("timestamp");
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
            mac.update(format!("{timestamp}.{}", String::from_utf8_lossy(&p.body)).as_bytes());
            assert_eq!(header(p, "x-signature"), Some(hex::encode(mac.finalize().into_bytes())));
        }
    }
}
