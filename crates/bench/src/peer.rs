//! The consume scenario's durable peer: the exactly-once loop a skilled engineer would write by
//! hand for the same job, without Fanout.
//!
//! A raw rust-rdkafka `BaseConsumer` polls a batch (whatever `poll` hands over without waiting,
//! up to [`PEER_BATCH`] records) and decodes each payload with the registry serde's typed fast
//! path while a writer thread applies the previous batch: in **one transaction per batch** it
//! writes, per event, the same dedupe row the consumer
//! runtime writes (`fanout_processed`, `INSERT … ON CONFLICT DO NOTHING`) and, only when that row
//! is new, the same effect row the Fanout side's handler writes (`bench_effects`). After the
//! commit it stores the batch's offsets, which librdkafka commits every second (the runtime's
//! `commit_interval_ms`): a crash re-reads at most that second, and the dedupe rows make the
//! re-read harmless. That is this design's floor on this machine; the runtime's ratio to it is
//! what the runtime itself costs.
//!
//! * SQLite through `rusqlite` on its own file: WAL and `synchronous = FULL` (sqlx's defaults,
//!   which the runtime's store runs with), cached prepared statements, row by row inside the
//!   transaction (an in-process statement costs a few microseconds; the commit's fsync is the
//!   cost that batching divides).
//! * PostgreSQL through sqlx's native `PgConnection` (prepared statements cached): per batch one
//!   `INSERT … SELECT unnest($2) … ON CONFLICT DO NOTHING RETURNING event_id` for the dedupe rows
//!   and one `unnest` insert for the new events' effects, so a batch of hundreds is four round
//!   trips (BEGIN, two statements, COMMIT) whatever the driver. PostgreSQL takes concurrent
//!   writers, so each partition's share of a batch goes to its own writer thread and connection,
//!   and partitions commit independently (a serial loop waits out every commit's fsync in turn;
//!   the runtime runs partitions in parallel too). A share's offsets are stored once it
//!   committed.

use fanout_core::clock::now_ms;
use std::{collections::HashSet, sync::Arc, time::Duration};

use anyhow::{bail, Context};
use fanout_core::Event;
use fanout_events::PostPublished;
use fanout_schema_registry::AvroSerde;
use rdkafka::{
    consumer::{BaseConsumer, Consumer as _},
    message::Headers,
    Message,
};
use sqlx::{postgres::PgConnectOptions, ConnectOptions, Connection};

use super::{
    consume::{Progress, EFFECTS_TABLE},
    env::{wait_for, Env},
};

/// Most records one poll batch (one transaction) takes. A hand-written loop drains what
/// librdkafka has prefetched; hundreds per transaction is where SQLite's fsync per commit stops
/// dominating (the plain-sqlite3 figures: 42k/s at 24 per transaction, 84k at 200,
/// 145k at 1,000); split three ways on PostgreSQL it is about the runtime's batch per partition.
pub const PEER_BATCH: usize = 1_000;

/// The runtime's own dedupe table and its expiry index (`crates/consumer/src/store.rs`): the peer
/// writes the same rows into the same shape, index included, because a real loop must expire its
/// marks too.
const DEDUPE_TABLES: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS fanout_processed (consumer TEXT NOT NULL, event_id TEXT NOT NULL, \
     processed_at_ms BIGINT NOT NULL, PRIMARY KEY (consumer, event_id))",
    "CREATE INDEX IF NOT EXISTS fanout_processed_age ON fanout_processed (consumer, processed_at_ms)",
];

/// Where the peer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStore<'a> {
    /// A SQLite file at this path (created).
    Sqlite(&'a str),
    /// A PostgreSQL database at this URL (the tables are created if missing).
    Postgres(&'a str),
}

/// One decoded record of a poll batch.
#[derive(Debug)]
struct Polled {
    event_id: String,
    event: PostPublished,
    partition: i32,
    offset: i64,
}

/// The dedupe key the runtime uses: the `ce_id` header, else the record's position.
fn event_id<M: Message>(message: &M) -> String {
    let header = message.headers().and_then(|headers| {
        headers.iter().find(|h| h.key == "ce_id").and_then(|h| h.value).map(|v| String::from_utf8_lossy(v))
    });
    match header {
        Some(id) => id.into_owned(),
        None => format!("{}/{}/{}", message.topic(), message.partition(), message.offset()),
    }
}

/// Polls one batch: waits up to 100 ms for the first record, then takes what is already there,
/// up to [`PEER_BATCH`].
fn poll_batch(consumer: &BaseConsumer, serde: &AvroSerde, batch: &mut Vec<Polled>) -> anyhow::Result<()> {
    batch.clear();
    let mut wait = Duration::from_millis(100);
    while batch.len() < PEER_BATCH {
        match consumer.poll(wait) {
            Some(Ok(message)) => {
                let event = serde.decode_cached::<PostPublished>(message.payload().unwrap_or_default())?;
                batch.push(Polled {
                    event_id: event_id(&message),
                    event,
                    partition: message.partition(),
                    offset: message.offset(),
                });
            }
            Some(Err(e)) => return Err(e).context("the durable peer's consumer"),
            None => break,
        }
        wait = Duration::ZERO;
    }
    Ok(())
}

/// Stores each partition's highest offset of the batch for the next auto-commit (librdkafka
/// commits `offset + 1`: the next record to read).
fn store_offsets(consumer: &BaseConsumer, topic: &str, batch: &[Polled]) -> anyhow::Result<()> {
    let mut highest: Vec<(i32, i64)> = Vec::new();
    for polled in batch {
        match highest.iter_mut().find(|(p, _)| *p == polled.partition) {
            Some((_, offset)) => *offset = (*offset).max(polled.offset),
            None => highest.push((polled.partition, polled.offset)),
        }
    }
    for (partition, offset) in highest {
        consumer.store_offset(topic, partition, offset)?;
    }
    Ok(())
}

/// The SQLite side of one batch: one transaction, two cached statements per event.
fn apply_sqlite(conn: &mut rusqlite::Connection, consumer: &str, batch: &[Polled]) -> anyhow::Result<()> {
    let tx = conn.transaction()?;
    {
        let now = now_ms();
        let mut mark = tx.prepare_cached(
            "INSERT INTO fanout_processed (consumer, event_id, processed_at_ms) VALUES (?1, ?2, ?3) \
             ON CONFLICT (consumer, event_id) DO NOTHING",
        )?;
        let mut effect =
            tx.prepare_cached("INSERT INTO bench_effects (consumer, post_id, user_id) VALUES (?1, ?2, ?3)")?;
        for polled in batch {
            // Zero rows: this event was applied before (a redelivery); its effect stays applied once.
            if mark.execute(rusqlite::params![consumer, polled.event_id, now])? == 1 {
                effect.execute(rusqlite::params![consumer, polled.event.post_id, polled.event.user_id])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// The PostgreSQL side of one batch (or one partition's share of it): one transaction, two
/// array statements.
async fn apply_postgres(
    conn: &mut sqlx::PgConnection,
    consumer: &str,
    batch: &[Polled],
) -> anyhow::Result<()> {
    let ids: Vec<&str> = batch.iter().map(|p| p.event_id.as_str()).collect();
    let mut tx = conn.begin().await?;
    let fresh: Vec<String> = sqlx::query_scalar(
        "INSERT INTO fanout_processed (consumer, event_id, processed_at_ms) \
         SELECT $1, id, $3 FROM unnest($2::text[]) AS id \
         ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id",
    )
    .bind(consumer)
    .bind(&ids)
    .bind(now_ms())
    .fetch_all(&mut *tx)
    .await?;
    // Effects only for the events whose dedupe row is new: a redelivered event is skipped.
    let fresh: HashSet<&str> = fresh.iter().map(String::as_str).collect();
    let (posts, users): (Vec<i64>, Vec<i64>) = batch
        .iter()
        .filter(|p| fresh.contains(p.event_id.as_str()))
        .map(|p| (p.event.post_id, p.event.user_id))
        .unzip();
    if !posts.is_empty() {
        sqlx::query(
            "INSERT INTO bench_effects (consumer, post_id, user_id) \
             SELECT $1, post, author FROM unnest($2::bigint[], $3::bigint[]) AS e (post, author)",
        )
        .bind(consumer)
        .bind(&posts)
        .bind(&users)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// PostgreSQL writers of one peer run: one per partition of the consume topic.
const PG_WRITERS: usize = 3;

/// One writer's store connection.
enum Writer {
    Sqlite(rusqlite::Connection),
    Postgres(sqlx::PgConnection, tokio::runtime::Handle),
}

/// The batch split by partition: share `i` holds the records of the partitions `p` with
/// `p % shares == i`, in batch order (so a partition's records keep their order).
fn by_partition(batch: Vec<Polled>, shares: usize) -> Vec<Vec<Polled>> {
    let mut split: Vec<Vec<Polled>> = (0..shares).map(|_| Vec::new()).collect();
    for polled in batch {
        split[polled.partition.unsigned_abs() as usize % shares].push(polled);
    }
    split
}

impl Writer {
    /// The writers for `store`, tables created: one for SQLite (one writer at a time is all it
    /// takes), [`PG_WRITERS`] for PostgreSQL.
    async fn open(store: PeerStore<'_>) -> anyhow::Result<Vec<Self>> {
        match store {
            PeerStore::Sqlite(path) => {
                let conn = rusqlite::Connection::open(path)?;
                // WAL with a full fsync per commit: what sqlx's SQLite defaults give the runtime.
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                for statement in DEDUPE_TABLES.iter().chain([&EFFECTS_TABLE]) {
                    conn.execute(statement, [])?;
                }
                Ok(vec![Self::Sqlite(conn)])
            }
            PeerStore::Postgres(url) => {
                let options = url.parse::<PgConnectOptions>()?;
                let mut writers = Vec::with_capacity(PG_WRITERS);
                for _ in 0..PG_WRITERS {
                    let mut conn = options.connect().await?;
                    if writers.is_empty() {
                        for statement in DEDUPE_TABLES.iter().chain([&EFFECTS_TABLE]) {
                            sqlx::query(statement).execute(&mut conn).await?;
                        }
                    }
                    writers.push(Self::Postgres(conn, tokio::runtime::Handle::current()));
                }
                Ok(writers)
            }
        }
    }

    /// Applies one batch in one transaction (called on the writer's own thread).
    fn apply(&mut self, consumer: &str, batch: &[Polled]) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(conn) => apply_sqlite(conn, consumer, batch),
            Self::Postgres(conn, runtime) => runtime.block_on(apply_postgres(conn, consumer, batch)),
        }
    }
}

/// Runs the hand-written exactly-once loop on `topic` from the beginning in a fresh group,
/// writing to `store`; stops after `expected` events or `cap` after the first. Returns events per
/// second, counted when their transaction committed.
pub async fn durable_consume(
    env: &Env,
    topic: &str,
    store: PeerStore<'_>,
    expected: usize,
    cap: Duration,
) -> anyhow::Result<f64> {
    let serde = env.serde()?;
    let id = serde.schema_id_for(topic, PostPublished::SCHEMA).await?;
    serde.writer_schema(id).await?;
    let name = env.group("peer");
    let mut config = env.client_config();
    config
        .set("group.id", &name)
        .set("auto.offset.reset", "earliest")
        // Offsets are stored only after their batch committed, then auto-committed every second
        // (rust-rdkafka's at_least_once example).
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "1000");
    let writers = Writer::open(store).await?;
    let topic = topic.to_owned();
    let progress = Arc::new(Progress::default());
    let watched = progress.clone();
    let progress_done = move || watched.finished(expected, cap);
    let counted = progress.clone();
    let running = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let consumer: BaseConsumer = config.create()?;
        consumer.subscribe(&[&topic])?;
        // The poller (this thread) decodes the next batch while the writers commit earlier ones,
        // so neither waits out the other (a commit's fsync is the longest wait). On PostgreSQL
        // each partition's share goes to its own writer, so partitions commit independently.
        // At most two batches per writer wait.
        let (to_poller, applied) = std::sync::mpsc::channel::<Vec<Polled>>();
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        for mut writer in writers {
            let (queue, batches) = std::sync::mpsc::sync_channel::<Vec<Polled>>(2);
            let (name, counted, to_poller) = (name.clone(), counted.clone(), to_poller.clone());
            queues.push(queue);
            threads.push(std::thread::spawn(move || -> anyhow::Result<()> {
                for batch in batches {
                    writer.apply(&name, &batch)?;
                    counted.tick_n(batch.len());
                    if to_poller.send(batch).is_err() {
                        break;
                    }
                }
                Ok(())
            }));
        }
        let mut polled = Ok(());
        'poll: while !progress_done() {
            // Offsets of committed batches only: what is stored is what survives a crash.
            for batch in applied.try_iter() {
                store_offsets(&consumer, &topic, &batch)?;
            }
            let mut batch = Vec::with_capacity(PEER_BATCH);
            if let Err(e) = poll_batch(&consumer, &serde, &mut batch) {
                polled = Err(e);
                break;
            }
            for (queue, share) in queues.iter().zip(by_partition(batch, queues.len())) {
                // A closed queue means that writer failed; its error is reported below.
                if !share.is_empty() && queue.send(share).is_err() {
                    break 'poll;
                }
            }
        }
        drop(queues);
        let mut written = Ok(());
        for thread in threads {
            let result = thread.join().map_err(|_| anyhow::anyhow!("a durable peer writer panicked"))?;
            written = written.and(result);
        }
        for batch in applied.try_iter() {
            store_offsets(&consumer, &topic, &batch)?;
        }
        written.and(polled)
    });
    let waited = wait_for("the durable peer", Duration::from_secs(60) + cap, || {
        progress.finished(expected, cap) || running.is_finished()
    })
    .await;
    if waited.is_err() {
        bail!("the durable peer handled {} of {expected} events in time", progress.count());
    }
    running.await?.context("the durable peer")?;
    progress.rate()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled(id: &str, partition: i32, offset: i64, post_id: i64) -> Polled {
        let mut event = super::super::env::post(0, 10);
        event.post_id = post_id;
        Polled { event_id: id.to_owned(), event, partition, offset }
    }

    #[test]
    fn a_batch_splits_by_partition_in_order() {
        let batch =
            vec![polled("a", 0, 1, 1), polled("b", 1, 7, 2), polled("c", 0, 2, 3), polled("d", 4, 1, 4)];
        let split = by_partition(batch, 3);
        let ids = |share: &Vec<Polled>| share.iter().map(|p| p.event_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&split[0]), ["a", "c"]);
        assert_eq!(ids(&split[1]), ["b", "d"]);
        assert!(split[2].is_empty());
    }

    #[test]
    fn a_redelivered_batch_writes_no_second_effect() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("peer.db");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let mut writers = runtime
            .block_on(Writer::open(PeerStore::Sqlite(path.to_str().expect("utf-8 path"))))
            .expect("opens");
        let store = &mut writers[0];
        let batch = [polled("a", 0, 1, 1), polled("b", 1, 7, 2)];
        store.apply("peer", &batch).expect("first delivery");
        store.apply("peer", &[polled("b", 1, 7, 2), polled("c", 1, 8, 3)]).expect("redelivery");
        let Writer::Sqlite(conn) = &*store else { unreachable!("opened as SQLite") };
        let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).expect("counts");
        assert_eq!(count("SELECT count(*) FROM fanout_processed"), 3);
        assert_eq!(count("SELECT count(*) FROM bench_effects"), 3, "b's effect is written once");
    }
}
