//! `fanout demo payments`: long-running results coming back through the bus. A fake payment
//! provider accepts charges at once and calls back later through the gateway: late, sometimes
//! twice, sometimes first with a bad signature, retrying until it gets a 2xx, and for a few
//! charges never. Two requesters, orders and then memberships (started once orders has its
//! results, with the gateway and its config untouched), wait for their own results with the
//! SDK's awaiter. The demo checks from the reply topics that each requester received each of its
//! results exactly once, nothing of the other's, and a timeout for each lost charge; any miss or
//! double makes it fail.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context};
use fanout_gateway::{Awaiter, AwaiterConfig, Gateway, GatewayConfig, Pending, Reply};
use fanout_kafka::TopicRead;
use fanout_scheduler::{Scheduler, SchedulerConfig};
use hmac::{Hmac, Mac};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rdkafka::ClientConfig;
use sha2::Sha256;
use sqlx::{Connection, PgConnection};

/// The gateway source the provider calls back through.
const SOURCE: &str = "fakepay";
/// Charges per requester, and how many of them the provider loses (never calls back).
const CHARGES: usize = 30;
const LOST: usize = 2;
/// How long a requester waits for a lost charge's callback (the others wait far longer).
const LOST_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the run creates, so it can all be removed at the end.
struct Names {
    topic: String,
    rejects: String,
    schedule: String,
    scheduler: String,
    replies: [String; 2],
    database: String,
}

impl Names {
    fn new(run: &str) -> Self {
        Self {
            topic: format!("payment.results.demo-{run}"),
            rejects: format!("_fanout_gateway_rejects.demo-{run}"),
            schedule: format!("_fanout_schedule.demo-{run}"),
            scheduler: format!("fanout-scheduler-demo-{run}"),
            replies: [
                format!("orders.payment-results.demo-{run}"),
                format!("memberships.payment-results.demo-{run}"),
            ],
            database: format!("fanout_demo_{run}"),
        }
    }
}

/// Runs the scenario against the broker at `bootstrap`, the registry at `registry` and a scratch
/// database on the PostgreSQL server at `database_url`.
pub async fn run(
    bootstrap: &str,
    registry: &str,
    database_url: &str,
    run: &str,
    seed: u64,
) -> anyhow::Result<()> {
    println!("Fanout demo, payments: a provider calls back late through the gateway to two requesters (seed {seed})");
    let names = Names::new(run);
    let mut admin = PgConnection::connect(database_url).await.with_context(|| {
        format!(
            "no PostgreSQL at {} for the gateway's dedupe store (start the local one with `scripts/stack up postgres`)",
            fanout_config::redact_url(database_url)
        )
    })?;
    sqlx::query(&format!("CREATE DATABASE \"{}\"", names.database)).execute(&mut admin).await?;
    let store = replace_database(database_url, &names.database);
    let outcome = drive(bootstrap, registry, &store, &names, seed).await;
    cleanup(bootstrap, &names, &mut admin).await;
    outcome
}

async fn drive(bootstrap: &str, registry: &str, store: &str, names: &Names, seed: u64) -> anyhow::Result<()> {
    let secret = format!("demo-secret-{seed:x}");
    let kafka = fanout_config::KafkaSettings { bootstrap: bootstrap.to_owned(), ..Default::default() };
    let registry =
        fanout_schema_registry::RegistrySettings { urls: vec![registry.to_owned()], ..Default::default() };
    let mut config: GatewayConfig = fanout_config::from_toml_str(&format!(
        r#"
        name = "fanout-gateway-demo"
        listen = "127.0.0.1:0"
        rejects_topic = "{rejects}"
        partitions = 3
        [http]
        listen = "127.0.0.1:0"
        [sources.{SOURCE}]
        verify = "hmac"
        secrets = ["{secret}"]
        signature_header = "X-Signature"
        timestamp_header = "X-Timestamp"
        signed_payload = "{{timestamp}}.{{body}}"
        topic = "{topic}"
        event_id = "body:/id"
        correlation_id = "body:/request_id"
        event_type = "body:/status"
        "#,
        rejects = names.rejects,
        topic = names.topic,
    ))?;
    config.kafka = kafka.clone();
    config.registry = registry.clone();
    config.store.url = store.to_owned();
    let gateway = Gateway::start(config).await.context("starting the gateway")?;
    let (callbacks, admin) = (gateway.callbacks_addr(), gateway.http_addr());
    let (stop_gateway, gateway_stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = tokio::spawn(gateway.run(async move {
        let _ = gateway_stopped.await;
    }));
    let scheduler = Scheduler::start(SchedulerConfig {
        name: names.scheduler.clone(),
        topic: names.schedule.clone(),
        partitions: 3,
        window_secs: 60,
        kafka: kafka.clone(),
        http: fanout_config::HttpSettings::on("127.0.0.1:0"),
        ..SchedulerConfig::default()
    })
    .await
    .context("starting the scheduler")?;
    let (stop_scheduler, scheduler_stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(scheduler.run(async move {
        let _ = scheduler_stopped.await;
    }));
    println!("gateway           http://{callbacks}/callbacks/{SOURCE}  (admin http://{admin})");

    let provider = Provider::new(format!("http://{callbacks}/callbacks/{SOURCE}"), secret, seed);
    let awaiter = |requester: &str, reply: &str| AwaiterConfig {
        requester: requester.to_owned(),
        reply_topic: reply.to_owned(),
        gateway: format!("http://{admin}"),
        gateway_token: None,
        partitions: 3,
        kafka: kafka.clone(),
        registry: registry.clone(),
        schedule_topic: names.schedule.clone(),
    };
    let mut rows = Vec::new();
    for (requester, reply) in ["orders", "memberships"].into_iter().zip(&names.replies) {
        // Memberships starts only now, after orders has its results: nothing about the gateway
        // changes for it.
        let awaiter = Awaiter::start(awaiter(requester, reply))
            .await
            .with_context(|| format!("starting {requester}"))?;
        println!("requester         {requester} waits on {reply}");
        rows.push(charge_all(&awaiter, &provider, requester).await?);
    }
    provider.finished().await;

    let client = fanout_kafka::client_config(&fanout_config::KafkaSettings {
        bootstrap: bootstrap.to_owned(),
        ..Default::default()
    });
    let mut problems = Vec::new();
    for (row, reply) in rows.iter_mut().zip(&names.replies) {
        check_topic(&client, reply, row, &mut problems).await?;
    }
    let sent = &provider.stats;
    println!();
    println!(
        "provider: {} charges accepted, {} callbacks sent ({} twice, {} first with a bad signature), {} never sent",
        rows.len() * CHARGES,
        sent.sent.load(Ordering::Relaxed),
        sent.twice.load(Ordering::Relaxed),
        sent.forged.load(Ordering::Relaxed),
        rows.len() * LOST
    );
    println!(
        "gateway:  {} accepted, {} duplicates answered 200 and not published, {} refused (401)",
        sent.accepted.load(Ordering::Relaxed),
        sent.duplicates.load(Ordering::Relaxed),
        sent.refused.load(Ordering::Relaxed)
    );
    println!(
        "{:<13} {:>8} {:>8} {:>10} {:>7} {:>8}  check",
        "requester", "charges", "results", "timed out", "double", "foreign"
    );
    for row in &rows {
        println!(
            "{:<13} {:>8} {:>8} {:>10} {:>7} {:>8}  {}",
            row.requester,
            CHARGES,
            row.results,
            row.timed_out,
            row.double,
            row.foreign,
            if row.problems.is_empty() { "ok" } else { "FAILED" }
        );
        problems.extend(row.problems.iter().cloned());
    }
    if sent.forged.load(Ordering::Relaxed) != sent.refused.load(Ordering::Relaxed) {
        problems.push(format!(
            "{} forged callbacks sent, {} refused",
            sent.forged.load(Ordering::Relaxed),
            sent.refused.load(Ordering::Relaxed)
        ));
    }

    let _ = stop_gateway.send(());
    gateway.await.context("the gateway task")??;
    let _ = stop_scheduler.send(());
    scheduler.await.context("the scheduler task")??;
    if !problems.is_empty() {
        bail!("the payments demo's check failed:\n  {}", problems.join("\n  "));
    }
    println!("payments OK: every result reached its requester exactly once, the lost ones as timeouts");
    Ok(())
}

/// One requester's results.
struct Row {
    requester: &'static str,
    /// The charges it issued, and whether each was lost.
    issued: HashMap<String, bool>,
    results: usize,
    timed_out: usize,
    double: usize,
    foreign: usize,
    problems: Vec<String>,
}

/// Issues the requester's charges (each awaited before the provider is asked), then waits for
/// every reply.
async fn charge_all(awaiter: &Awaiter, provider: &Provider, requester: &'static str) -> anyhow::Result<Row> {
    let mut row = Row {
        requester,
        issued: HashMap::new(),
        results: 0,
        timed_out: 0,
        double: 0,
        foreign: 0,
        problems: Vec::new(),
    };
    let mut pending: Vec<(String, bool, Pending)> = Vec::new();
    for n in 0..CHARGES {
        let id = format!("{requester}-{n}");
        let lost = n < LOST;
        let timeout = if lost { LOST_TIMEOUT } else { Duration::from_secs(60) };
        let waiting = awaiter.expect(SOURCE, &id, timeout).await?;
        provider.charge(&id, lost);
        row.issued.insert(id.clone(), lost);
        pending.push((id, lost, waiting));
    }
    for (id, lost, waiting) in pending {
        match tokio::time::timeout(Duration::from_secs(60), waiting.wait()).await {
            Ok(Ok(Reply::Received(result))) if !lost && result.correlation_id == id => row.results += 1,
            Ok(Ok(Reply::TimedOut(timeout))) if lost && timeout.correlation_id == id => row.timed_out += 1,
            Ok(Ok(other)) => row.problems.push(format!("{id}: unexpected {other:?}")),
            Ok(Err(error)) => row.problems.push(format!("{id}: {}", fanout_core::report(&error))),
            Err(_) => row.problems.push(format!("{id}: no result and no timeout within 60 s")),
        }
    }
    Ok(row)
}

/// Reads the requester's reply topic: one result per charge made, one timeout per charge lost,
/// nothing of another requester's.
async fn check_topic(
    client: &ClientConfig,
    topic: &str,
    row: &mut Row,
    problems: &mut Vec<String>,
) -> anyhow::Result<()> {
    let records = TopicRead::new(topic).read(client).await.with_context(|| format!("reading {topic}"))?;
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for record in &records {
        let kind = record
            .headers
            .iter()
            .find(|(name, _)| name == fanout_core::headers::TYPE)
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let key = String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned();
        *seen.entry((kind, key)).or_default() += 1;
    }
    for ((kind, key), count) in &seen {
        match row.issued.get(key) {
            None => row.foreign += count,
            Some(_) if *count > 1 => row.double += count - 1,
            Some(lost) => {
                let expected = if *lost { "callback.timed_out" } else { "callback.received" };
                if kind != expected {
                    problems.push(format!("{}: {key} has a {kind} on {topic}", row.requester));
                }
            }
        }
    }
    let results = seen.keys().filter(|(kind, _)| kind == "callback.received").count();
    if results != CHARGES - LOST {
        problems.push(format!("{}: {results} results on {topic}, not {}", row.requester, CHARGES - LOST));
    }
    if row.double > 0 || row.foreign > 0 {
        problems
            .push(format!("{}: {} doubles, {} foreign on {topic}", row.requester, row.double, row.foreign));
    }
    Ok(())
}

/// What the provider did.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    twice: AtomicU64,
    forged: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    refused: AtomicU64,
}

/// The fake provider: accepts a charge at once and calls back 100–800 ms later, retrying on
/// anything but a 2xx; one charge in eight is first called back with a bad signature, one in
/// eight twice.
struct Provider {
    url: String,
    secret: String,
    rng: Mutex<StdRng>,
    http: reqwest::Client,
    stats: Arc<Stats>,
    calls: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Provider {
    fn new(url: String, secret: String, seed: u64) -> Self {
        Self {
            url,
            secret,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            http: reqwest::Client::new(),
            stats: Arc::default(),
            calls: Mutex::default(),
        }
    }

    fn charge(&self, request_id: &str, lost: bool) {
        if lost {
            return;
        }
        let (delay, forged_first, twice) = {
            let mut rng = self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (rng.gen_range(100..=800), rng.gen_ratio(1, 8), rng.gen_ratio(1, 8))
        };
        let body = serde_json::json!({
            "id": format!("evt-{request_id}"),
            "request_id": request_id,
            "status": "SUCCESS",
            "amount": 1299,
        })
        .to_string();
        let (url, secret, http, stats) =
            (self.url.clone(), self.secret.clone(), self.http.clone(), self.stats.clone());
        let call = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            if forged_first {
                stats.forged.fetch_add(1, Ordering::Relaxed);
                if let Ok(401) = send(&http, &url, &body, "not-the-secret", &stats).await {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            for copy in 0..if twice { 2 } else { 1 } {
                if copy == 1 {
                    stats.twice.fetch_add(1, Ordering::Relaxed);
                }
                // Retries until a 2xx, as providers do (for days; here for half a minute).
                for _ in 0..300 {
                    if let Ok(200) = send(&http, &url, &body, &secret, &stats).await {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(call);
    }

    /// Waits until every callback was delivered.
    async fn finished(&self) {
        let calls =
            std::mem::take(&mut *self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for call in calls {
            let _ = call.await;
        }
    }
}

/// One callback request, signed now with `secret`; its status.
async fn send(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    secret: &str,
    stats: &Stats,
) -> anyhow::Result<u16> {
    let timestamp = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let response = http
        .post(url)
        .header("X-Signature", hex::encode(mac.finalize().into_bytes()))
        .header("X-Timestamp", timestamp.to_string())
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await?;
    stats.sent.fetch_add(1, Ordering::Relaxed);
    let status = response.status().as_u16();
    if status == 200 {
        match response.text().await?.as_str() {
            r#"{"status":"duplicate"}"# => stats.duplicates.fetch_add(1, Ordering::Relaxed),
            _ => stats.accepted.fetch_add(1, Ordering::Relaxed),
        };
    }
    Ok(status)
}

/// `url` with its database name replaced by `database`.
fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |s| s + 2) => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

async fn cleanup(bootstrap: &str, names: &Names, admin: &mut PgConnection) {
    let client = fanout_kafka::client_config(&fanout_config::KafkaSettings {
        bootstrap: bootstrap.to_owned(),
        ..Default::default()
    });
    let dead_letters = fanout_core::schedule::dead_letters(&names.schedule);
    let topics = [
        names.topic.as_str(),
        names.rejects.as_str(),
        names.schedule.as_str(),
        dead_letters.as_str(),
        names.replies[0].as_str(),
        names.replies[1].as_str(),
    ];
    if let Ok(Err(e)) =
        tokio::time::timeout(Duration::from_secs(15), fanout_kafka::delete_topics(&client, &topics)).await
    {
        eprintln!("could not delete the payments demo's topics: {e}");
    }
    let mut deleted = false;
    for _ in 0..30 {
        if fanout_kafka::delete_groups(&client, &[names.scheduler.as_str()]).await.is_ok() {
            deleted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if !deleted {
        eprintln!("could not delete the payments demo's scheduler group");
    }
    let drop = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", names.database);
    if let Err(e) = sqlx::query(&drop).execute(&mut *admin).await {
        eprintln!("could not drop the payments demo's database {}: {e}", names.database);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_is_swapped_in_the_url() {
        let swap = |url| super::replace_database(url, "demo");
        assert_eq!(swap("postgres://u:p@h:5432/fanout"), "postgres://u:p@h:5432/demo");
        assert_eq!(swap("postgres://u:p@h/fanout?sslmode=disable"), "postgres://u:p@h/demo?sslmode=disable");
        assert_eq!(swap("postgres://h"), "postgres://h/demo");
    }
}
