//! Fault 7: the network between one client and the brokers, made in user space by Toxiproxy
//! (`scripts/stack up toxiproxy`), since this machine's kernel has no netem and no firewall. The
//! client bootstraps at the nodes' proxied listeners, so all its traffic goes through one proxy
//! per node, while brokers and controllers talk directly: the cluster stays whole and in sync,
//! and only the client is cut off or slowed.
//!
//! * 7a: the SDK publishes while the proxy of a partition's leader drops the leader's answers for
//!   10 s (the leader still appends what it gets), heals, then drops both directions for 10 s,
//!   and heals: no acknowledged event lost or duplicated, every publish answered.
//! * 7b: the rewards service consumes through 150 ± 100 ms of latency each way on every proxy,
//!   then through its connections reset for longer than its session and then again and again:
//!   every effect applied once.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{ensure, Context};
use fanout_config::KafkaSettings;
use fanout_core::headers;
use fanout_producer::{PublishOptions, Publisher};
use fanout_rewards::RewardsSettings;
use fanout_service::ServiceConfig;
use fanout_testkit::{
    service::Running,
    stack::{ProxiedCluster, Stream, Toxic, ToxicKind, CLUSTER_NODES},
    wait_until, Kafka, Postgres,
};

use crate::common::{cluster_stack, job_post, ledger, ledger_rows, publish_paced, LIMIT};

/// How long the leader's proxy drops everything in 7a.
const BLACKHOLE: Duration = Duration::from_secs(10);
/// How long 7b's consumer works through latency before the resets begin.
const LATENCY_PHASE: Duration = Duration::from_secs(12);
/// 7b's resets: while a cut lasts, every connection that carries data is reset. The first cut
/// outlasts the consumer's session (6 s), so the group drops the member and its partitions start
/// again from the committed offsets, redelivering what was applied but not yet committed; the
/// short ones after it cut connections again and again. `BETWEEN_CUTS` of a healthy network
/// follows each.
const LONG_CUT: Duration = Duration::from_secs(8);
const SHORT_CUTS: usize = 6;
const CUT: Duration = Duration::from_secs(1);
const BETWEEN_CUTS: Duration = Duration::from_secs(2);
const EVENTS: i64 = 12_000;
const BEANS: i64 = 10;

/// Points a client's Kafka settings at the cluster through its proxies, dropping the direct
/// handle's login (the proxied listener is plaintext).
fn through_proxies(settings: &mut KafkaSettings, direct: &Kafka, proxied: &ProxiedCluster) {
    settings.bootstrap = proxied.kafka().bootstrap().to_owned();
    for (key, _) in direct.properties() {
        settings.properties.remove(key);
    }
}

/// The bytes through each node's proxy so far.
async fn proxy_bytes(proxied: &ProxiedCluster) -> anyhow::Result<Vec<u64>> {
    let mut bytes = Vec::new();
    for node in CLUSTER_NODES {
        bytes.push(proxied.bytes(node).await?);
    }
    Ok(bytes)
}

/// What came back for one publish.
struct Acked {
    partition: i32,
    offset: i64,
    id: String,
}

/// One publish: when it started and ended, and what came back.
struct Outcome {
    started: Instant,
    ended: Instant,
    result: Result<Acked, String>,
}

impl Outcome {
    /// Acknowledged on partition 0.
    fn on_p0(&self) -> Option<&Acked> {
        self.result.as_ref().ok().filter(|a| a.partition == 0)
    }
}

/// One blackhole of 7a: when it began and healed, and partition 0's high watermark just before
/// the heal.
struct Window {
    what: &'static str,
    from: Instant,
    to: Instant,
    high_at_heal: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_blackholed_while_publishing_loses_and_duplicates_nothing() -> anyhow::Result<()> {
    let began = Instant::now();
    let (cluster, stack) = cluster_stack().await?;
    let proxied = cluster.through_toxiproxy().await?;
    eprintln!(
        "network: the publisher reaches the cluster through Toxiproxy at {}",
        proxied.kafka().bootstrap()
    );
    let topic = stack.topic("fault-net-publish", 3).await?;
    let mut config = stack.publisher_config("fault-net-publish");
    through_proxies(&mut config.kafka, &stack.kafka, &proxied);
    let publisher = Publisher::new(config)?;
    let to = PublishOptions::new().topic(topic.name());
    // Registers the schema and gets the producer its id before the clock starts.
    publisher.publish_with(&job_post(0), &to).await?;
    let leader = cluster.leader(topic.name(), 0).await?;
    let bytes_before = proxied.bytes(leader).await?;

    let tasks = 8;
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicI64::new(1));
    let acked = Arc::new(AtomicUsize::new(0));
    let acked_p0 = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..tasks)
        .map(|_| {
            let (publisher, to) = (publisher.clone(), to.clone());
            let (stop, next, acked, acked_p0) = (stop.clone(), next.clone(), acked.clone(), acked_p0.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let post = job_post(next.fetch_add(1, Ordering::Relaxed));
                    let started = Instant::now();
                    let result = publisher.publish_with(&post, &to).await;
                    let ended = Instant::now();
                    if let Ok(delivery) = &result {
                        acked.fetch_add(1, Ordering::Relaxed);
                        if delivery.partition == 0 {
                            acked_p0.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    let result = result
                        .map(|d| Acked {
                            partition: d.partition,
                            offset: d.offset,
                            id: d.event_id.to_string(),
                        })
                        .map_err(|e| format!("{e:?}"));
                    outcomes.push(Outcome { started, ended, result });
                }
                outcomes
            })
        })
        .collect();

    wait_until(LIMIT, "1,000 events acknowledged through the proxies", || {
        let acked = acked.clone();
        async move { Ok(acked.load(Ordering::Relaxed) >= 1_000) }
    })
    .await?;
    let acked_at_first = acked.load(Ordering::Relaxed);
    // First only the answers are dropped: the leader still appends what the publisher sends, and
    // the publisher must retry it after the heal without writing it twice. Then both directions,
    // as a partition: nothing reaches the leader either.
    let acks_lost =
        [Toxic::new("blackhole-downstream", ToxicKind::Timeout { timeout_ms: 0 }, Stream::Downstream)];
    let partition = Toxic::both_ways("blackhole", ToxicKind::Timeout { timeout_ms: 0 });
    let mut windows = Vec::new();
    for (what, toxics) in [("acks dropped", &acks_lost[..]), ("both directions dropped", &partition[..])] {
        proxied.add(leader, toxics).await?;
        let from = Instant::now();
        // The fault's window, not a wait for anything.
        tokio::time::sleep(BLACKHOLE).await;
        let high_at_heal = cluster.high_watermark(topic.name(), 0).await?;
        let to = Instant::now();
        proxied.remove(leader, toxics).await?;
        windows.push(Window { what, from, to, high_at_heal });
        let p0_at_heal = acked_p0.load(Ordering::Relaxed);
        wait_until(LIMIT, "500 more acknowledgements on partition 0 after the heal", || {
            let acked_p0 = acked_p0.clone();
            async move { Ok(acked_p0.load(Ordering::Relaxed) >= p0_at_heal + 500) }
        })
        .await?;
    }
    stop.store(true, Ordering::Relaxed);

    let mut outcomes = Vec::new();
    for task in publishers {
        // delivery.timeout.ms (30 s) bounds every publish; a publish still pending after twice
        // that is one the SDK neither acknowledged nor failed.
        let task_outcomes = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("a publish neither acknowledged nor failed within 60 s")??;
        outcomes.extend(task_outcomes);
    }
    let leader_after = cluster.leader(topic.name(), 0).await?;
    let bytes_after = proxied.bytes(leader).await?;

    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    for outcome in &outcomes {
        match &outcome.result {
            Ok(acked) => acknowledged.push(acked.id.clone()),
            Err(e) => failed.push(e.clone()),
        }
    }
    let mut report = Vec::new();
    let mut p0_acked_in_blackholes = 0;
    let mut resent = Vec::new();
    for window in &windows {
        // No answer from partition 0's leader can come through, once one already on its way when
        // the toxic went in (a margin of 500 ms) has arrived.
        let p0_acked = outcomes
            .iter()
            .filter(|o| o.on_p0().is_some())
            .filter(|o| o.ended > window.from + Duration::from_millis(500) && o.ended < window.to)
            .count();
        let others_acked = outcomes
            .iter()
            .filter(|o| o.result.as_ref().is_ok_and(|a| a.partition != 0))
            .filter(|o| o.ended > window.from && o.ended < window.to)
            .count();
        let after_heal = || {
            outcomes
                .iter()
                .filter(move |o| o.ended >= window.to && o.started < window.to && o.on_p0().is_some())
        };
        let first_p0_after = after_heal().map(|o| o.ended - window.to).min();
        // In the log before the heal, acknowledged only after it: the publisher sent these again
        // on a new connection, and the leader answered with the offset it had already given them.
        let retried =
            after_heal().filter(|o| o.on_p0().is_some_and(|a| a.offset < window.high_at_heal)).count();
        p0_acked_in_blackholes += p0_acked;
        resent.push(retried);
        report.push(format!(
            "{} for {BLACKHOLE:?}: partition 0 had {p0_acked} acks and other partitions {others_acked}, the \
             first partition 0 ack came {first_p0_after:?} after the heal, {retried} acks after it were for \
             records appended before it",
            window.what
        ));
    }
    let longest = outcomes.iter().map(|o| o.ended - o.started).max().unwrap_or_default();

    let records = stack.kafka.read_at_least(topic.name(), acknowledged.len() + 1, LIMIT).await?;
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for record in &records {
        *copies.entry(record.header(headers::ID).unwrap_or_default()).or_default() += 1;
    }
    let lost = acknowledged.iter().filter(|id| !copies.contains_key(id.as_str())).count();
    let duplicated = copies.values().filter(|n| **n > 1).count();
    eprintln!(
        "verdict: fault 7a (blackhole): node {leader}'s proxy (leader of partition 0), after {acked_at_first} \
         acks: {}; {} publishes: {} acknowledged, {} failed; longest publish {longest:?}; partition 0 led by \
         node {leader_after} after; {} bytes through the proxy; {} records in the topic, {lost} acknowledged \
         lost, {duplicated} duplicated; {:?} in all",
        report.join("; "),
        outcomes.len(),
        acknowledged.len(),
        failed.len(),
        bytes_after - bytes_before,
        records.len(),
        began.elapsed(),
    );
    if let Some(error) = failed.first() {
        eprintln!("network: first failed publish: {error}");
    }
    ensure!(lost == 0, "{lost} acknowledged events are not in the topic");
    ensure!(duplicated == 0, "{duplicated} events are in the topic more than once");
    ensure!(
        p0_acked_in_blackholes == 0,
        "{p0_acked_in_blackholes} publishes to partition 0 were acknowledged while its leader's proxy dropped \
         the answers: the publisher's traffic did not go through the proxy"
    );
    ensure!(
        resent[0] > 0,
        "no record appended while its ack was dropped was acknowledged after the heal, so no resend was tested"
    );
    ensure!(
        longest >= BLACKHOLE / 2,
        "no publish waited out a blackhole (longest {longest:?}): the fault did not reach the publisher"
    );
    ensure!(
        leader_after == leader,
        "partition 0 moved from node {leader} to {leader_after}: the fault split the cluster, not one client"
    );
    stack.stop().await
}

/// The consumer's traffic through each proxy between two byte counts.
fn grew(before: &[u64], after: &[u64]) -> Vec<u64> {
    before.iter().zip(after).map(|(b, a)| a.saturating_sub(*b)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_through_latency_and_connection_resets_apply_each_effect_once() -> anyhow::Result<()> {
    let began = Instant::now();
    let (cluster, stack) = cluster_stack().await?;
    let proxied = cluster.through_toxiproxy().await?;
    eprintln!(
        "network: the consumer reaches the cluster through Toxiproxy at {}",
        proxied.kafka().bootstrap()
    );
    let topic = stack.topic("fault-net-consumers", 3).await?;
    let db = Postgres::connect().await?.database().await?;
    let pool = sqlx::PgPool::connect_with(db.options()).await?;
    let mut config =
        ServiceConfig::new(RewardsSettings { topic: topic.name().to_owned(), beans_per_job_post: BEANS });
    stack.configure(&mut config, &db.url());
    through_proxies(&mut config.consumer.kafka, &stack.kafka, &proxied);
    // As in fault 2: a member whose connections are cut is replaced within seconds.
    config.consumer.kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    config.consumer.kafka.properties.insert("heartbeat.interval.ms".into(), "1000".into());
    let bytes_before = proxy_bytes(&proxied).await?;

    let latency = Toxic::both_ways("latency", ToxicKind::Latency { latency_ms: 150, jitter_ms: 100 });
    proxied.add_everywhere(&latency).await?;
    let latency_from = Instant::now();
    // Connecting is two round trips (API versions, metadata), each at least 2 × 50 ms now.
    let probe = Instant::now();
    Kafka::connect_with(proxied.kafka().bootstrap(), Vec::new(), Duration::from_secs(30)).await?;
    let round_trips = probe.elapsed();

    let running = Running::start(fanout_rewards::build(config).await?);
    let name = running.name.clone();
    let publishing = publish_paced(
        &stack,
        "fault-net-consumers",
        topic.name(),
        (0..EVENTS).map(job_post).collect(),
        100,
        // About 36 s of publishing: through the latency and every cut.
        Duration::from_millis(300),
    )?;

    let outcome = async {
        // The latency phase's window, then at least some progress through it.
        tokio::time::sleep_until((latency_from + LATENCY_PHASE).into()).await;
        wait_until(LIMIT, "1,000 events credited through the latency", || {
            let pool = pool.clone();
            async move { Ok(ledger_rows(&pool).await >= 1_000) }
        })
        .await?;
        let after_latency = ledger_rows(&pool).await;
        proxied.remove_everywhere(&latency).await?;

        let reset = Toxic::both_ways("reset", ToxicKind::ResetPeer { timeout_ms: 0 });
        let mut at_cuts = Vec::new();
        for cut in std::iter::once(LONG_CUT).chain(std::iter::repeat_n(CUT, SHORT_CUTS)) {
            at_cuts.push(ledger_rows(&pool).await);
            proxied.add_everywhere(&reset).await?;
            // The windows of the cut and of the healthy network after it.
            tokio::time::sleep(cut).await;
            proxied.remove_everywhere(&reset).await?;
            tokio::time::sleep(BETWEEN_CUTS).await;
        }
        let after_cuts = ledger_rows(&pool).await;
        let cuts_ended = Instant::now();
        publishing.await??;
        wait_until(LIMIT, "every event credited", || {
            let pool = pool.clone();
            async move { Ok(ledger_rows(&pool).await >= EVENTS) }
        })
        .await?;
        let caught_up = cuts_ended.elapsed();
        let duplicates = running.consumed("duplicate").await?;
        anyhow::Ok((after_latency, at_cuts, after_cuts, caught_up, duplicates))
    }
    .await;
    proxied.heal().await?;
    let stopped = running.stop().await;
    let (after_latency, at_cuts, after_cuts, caught_up, duplicates) = outcome?;
    stopped.context("the rewards service, after the network faults")?;
    let bytes = grew(&bytes_before, &proxy_bytes(&proxied).await?);

    let (rows, distinct, balance) = ledger(&pool).await?;
    eprintln!(
        "verdict: fault 7b (latency, resets): {EVENTS} events; connecting through 150 ± 100 ms each way took \
         {round_trips:?}; {after_latency} credited after {LATENCY_PHASE:?} of latency; connections reset for \
         {LONG_CUT:?}, then {SHORT_CUTS} times for {CUT:?}, {BETWEEN_CUTS:?} apart, with {at_cuts:?} credited \
         at each cut, {after_cuts} {BETWEEN_CUTS:?} after the last, all {caught_up:?} after that; {duplicates} \
         redeliveries skipped; bytes through the proxies {bytes:?}; ledger {rows} rows, {distinct} distinct \
         events, balances {balance} (expected {}); {:?} in all",
        EVENTS * BEANS,
        began.elapsed(),
    );
    ensure!(rows == EVENTS, "ledger holds {rows} rows for {EVENTS} events");
    ensure!(distinct == EVENTS, "ledger holds {distinct} distinct events for {EVENTS}");
    ensure!(balance == EVENTS * BEANS, "balances sum to {balance}, not {}", EVENTS * BEANS);
    ensure!(
        duplicates > 0.0,
        "no event was redelivered after a cut longer than the session, so exactly once was not tested"
    );
    ensure!(
        round_trips >= Duration::from_millis(100),
        "connecting through the proxies took {round_trips:?}: the latency toxic is not in the path"
    );
    ensure!(
        bytes.iter().all(|b| *b > 0),
        "some proxy carried no traffic ({bytes:?}): the consumer bypassed it"
    );
    pool.close().await;
    stack.delete_derived_topics(topic.name(), &name).await;
    stack.stop().await
}
