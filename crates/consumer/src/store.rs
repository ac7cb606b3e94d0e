//! The consumer's own database: dedupe marks (`fanout_processed`) and keys held back behind a
//! retrying event (`fanout_parked_keys`), written in the same transaction as the handler's effect.
//!
//! One code path for SQLite (embedded, one instance) and PostgreSQL (several instances) through
//! `sqlx::Any`: the statements below are portable (`$n` placeholders, `ON CONFLICT`).

use std::{collections::HashSet, sync::Arc, time::Duration};

use sqlx::{
    any::{AnyConnectOptions, AnyPoolOptions},
    Any, AnyConnection, AnyPool, Executor, Row, Transaction,
};

use fanout_migrate::Blocks;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{config::StoreSettings, ConsumerError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The idempotency store of one consumer.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: AnyPool,
    /// One connection of its own for `/readyz`: a store whose connections are all busy with
    /// batches is busy, not unreachable.
    health: AnyPool,
    consumer: String,
    backend: Backend,
    /// SQLite's one write lock, taken in turn by batches (FIFO) instead of by SQLite's busy
    /// handler, which sleeps and polls; `None` on PostgreSQL.
    writer: Option<Arc<Semaphore>>,
}

/// Most dedupe marks one insert statement writes: three bind parameters each stay below SQLite's
/// (32,766) and PostgreSQL's (65,535) limits.
const MARK_CHUNK: usize = 1_000;

/// Most dedupe marks one expiry statement deletes.
const EXPIRE_CHUNK: i64 = 5_000;

/// How long `/readyz` waits for the store before calling it unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The runtime's tables, in block [`fanout_migrate::CONSUMER_BLOCK`].
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!();

impl Store {
    /// Opens the pool and migrates the runtime's tables.
    pub(crate) async fn open(settings: &StoreSettings, consumer: &str) -> Result<Self, ConsumerError> {
        sqlx::any::install_default_drivers();
        let redacted = fanout_config::redact_url(&settings.url);
        let failed = |source| ConsumerError::Store { url: redacted.clone(), source };
        let (backend, url) = if settings.url.starts_with("sqlite:") {
            // `mode=rwc` lets SQLite create the file on first start, as an embedded store should.
            let url = if settings.url.contains('?') {
                settings.url.clone()
            } else {
                format!("{}?mode=rwc", settings.url)
            };
            (Backend::Sqlite, url)
        } else {
            (Backend::Postgres, settings.url.clone())
        };
        let options: AnyConnectOptions = url.parse().map_err(failed)?;
        let busy_timeout = settings.busy_timeout_ms;
        let health = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(PING_TIMEOUT)
            .connect_lazy_with(options.clone());
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; busy_timeout makes a writer wait
                        // for the lock instead of failing at once.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(format!("PRAGMA busy_timeout = {busy_timeout}").as_str()).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(failed)?;
        let writer = (backend == Backend::Sqlite).then(|| Arc::new(Semaphore::new(1)));
        let blocks = Blocks::Only(fanout_migrate::CONSUMER_BLOCK);
        fanout_migrate::apply(&pool, "the consumer runtime", blocks, &MIGRATIONS)
            .await
            .map_err(|source| ConsumerError::Migration { url: redacted.clone(), source })?;
        Ok(Self { pool, health, consumer: consumer.to_owned(), backend, writer })
    }

    /// True for SQLite, whose single writer lets one batch at a time write.
    pub(crate) fn single_writer(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// Waits for this batch's turn to write, on a single-writer store; hold the permit until
    /// the transaction has ended. On PostgreSQL there is no turn to wait for.
    pub(crate) async fn write_turn(&self) -> Option<OwnedSemaphorePermit> {
        match &self.writer {
            // The semaphore is never closed, so acquiring fails never.
            Some(writer) => writer.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The pool, for the consumer's own tables and queries.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a batch transaction. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that read first could not upgrade to writing after
    /// another writer committed, and would fail instead of waiting.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Marks every id in `event_ids` processed, in statements of at most [`MARK_CHUNK`] rows;
    /// returns the ids that were not marked before (the rest are duplicates). The ids must be
    /// distinct.
    pub(crate) async fn mark_processed_many(
        &self,
        conn: &mut AnyConnection,
        event_ids: &[&str],
        now_ms: i64,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let mut fresh = HashSet::with_capacity(event_ids.len());
        for chunk in event_ids.chunks(MARK_CHUNK) {
            // Anonymous placeholders on SQLite: it binds numbered ones in quadratic time.
            let values = match self.backend {
                Backend::Sqlite => crate::sql::anonymous(chunk.len(), 3),
                Backend::Postgres => crate::sql::numbered(chunk.len(), 3),
            };
            let sql = format!(
                "INSERT INTO fanout_processed (consumer, event_id, processed_at_ms) VALUES {values} \
                 ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id"
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(&self.consumer).bind(*id).bind(now_ms);
            }
            for row in query.fetch_all(&mut *conn).await? {
                fresh.insert(row.try_get::<String, _>(0)?);
            }
        }
        Ok(fresh)
    }

    /// Every parked key of this consumer: (topic, hex key, event id).
    pub(crate) async fn parked_keys(&self) -> Result<Vec<(String, String, String)>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT topic, record_key, event_id FROM fanout_parked_keys WHERE consumer = $1")
                .bind(&self.consumer)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))).collect()
    }

    /// Records that `event_id` of `key` waits in the retry path.
    pub(crate) async fn park(
        &self,
        conn: &mut AnyConnection,
        parked: &Parked<'_>,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO fanout_parked_keys (consumer, topic, record_key, event_id, original_offset, parked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consumer, topic, record_key, event_id) DO NOTHING",
        )
        .bind(&self.consumer)
        .bind(parked.topic)
        .bind(parked.key)
        .bind(parked.event_id)
        .bind(parked.offset)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Records that `event_id` left the retry path (applied, duplicate or dead-lettered).
    pub(crate) async fn unpark(
        &self,
        conn: &mut AnyConnection,
        parked: &Parked<'_>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM fanout_parked_keys WHERE consumer = $1 AND topic = $2 AND record_key = $3 AND event_id = $4",
        )
        .bind(&self.consumer)
        .bind(parked.topic)
        .bind(parked.key)
        .bind(parked.event_id)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Deletes dedupe marks older than `before_ms`; returns how many. In chunks of
    /// [`EXPIRE_CHUNK`], each its own short transaction, so a large backlog of expired marks
    /// never holds the store (SQLite's single write lock) away from batches for long.
    pub(crate) async fn expire(&self, before_ms: i64) -> Result<u64, sqlx::Error> {
        let mut expired = 0;
        loop {
            let result = sqlx::query(
                "DELETE FROM fanout_processed WHERE consumer = $1 AND event_id IN \
                 (SELECT event_id FROM fanout_processed WHERE consumer = $1 AND processed_at_ms < $2 LIMIT $3)",
            )
            .bind(&self.consumer)
            .bind(before_ms)
            .bind(EXPIRE_CHUNK)
            .execute(&self.pool)
            .await?;
            expired += result.rows_affected();
            if result.rows_affected() < EXPIRE_CHUNK as u64 {
                return Ok(expired);
            }
        }
    }

    /// True when the database answers within [`PING_TIMEOUT`].
    pub(crate) async fn ping(&self) -> bool {
        let ping = sqlx::query("SELECT 1").execute(&self.health);
        matches!(tokio::time::timeout(PING_TIMEOUT, ping).await, Ok(Ok(_)))
    }
}

/// An event held in the retry path, identified by its original topic, key and id.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Parked<'a> {
    pub(crate) topic: &'a str,
    /// The key, hex-encoded (keys are bytes; hex keeps the column portable text).
    pub(crate) key: &'a str,
    pub(crate) event_id: &'a str,
    pub(crate) offset: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn mark(store: &Store, conn: &mut AnyConnection, ids: &[&str], now: i64) -> Vec<String> {
        let mut fresh: Vec<String> =
            store.mark_processed_many(conn, ids, now).await.expect("marks").into_iter().collect();
        fresh.sort();
        fresh
    }

    #[tokio::test]
    async fn sqlite_dedupes_and_parks_with_dollar_placeholders() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = StoreSettings {
            url: format!("sqlite:{}", dir.path().join("store.db").display()),
            ..StoreSettings::default()
        };
        let store = Store::open(&settings, "c").await.expect("opens");
        // Opening twice (a restart) finds the tables in place.
        let store = Store::open(&settings, "c").await.map(|_| store).expect("reopens");
        let mut tx = store.begin().await.expect("begins");
        assert_eq!(mark(&store, &mut tx, &["e1"], 10).await, ["e1"]);
        assert_eq!(mark(&store, &mut tx, &["e0", "e1", "e2"], 11).await, ["e0", "e2"], "e1 is a duplicate");
        let parked = Parked { topic: "t", key: "6b", event_id: "e2", offset: 3 };
        store.park(&mut tx, &parked, 10).await.expect("parks");
        store.park(&mut tx, &parked, 10).await.expect("parks idempotently");
        tx.commit().await.expect("commits");
        let rows = store.parked_keys().await.expect("reads");
        assert_eq!(rows, [("t".to_owned(), "6b".to_owned(), "e2".to_owned())]);
        let mut tx = store.begin().await.expect("begins");
        store.unpark(&mut tx, &parked).await.expect("unparks");
        tx.commit().await.expect("commits");
        assert!(store.parked_keys().await.expect("reads").is_empty());
        assert_eq!(store.expire(11).await.expect("expires"), 1);

        // More expired marks than one chunk of either statement, and a recent one: all the old
        // ones go, in chunks.
        let mut tx = store.begin().await.expect("begins");
        let old: Vec<String> = (0..EXPIRE_CHUNK + 7).map(|i| format!("old-{i}")).collect();
        let old: Vec<&str> = old.iter().map(String::as_str).collect();
        assert_eq!(store.mark_processed_many(&mut tx, &old, 100).await.expect("marks").len(), old.len());
        assert_eq!(mark(&store, &mut tx, &["recent"], 1_000).await, ["recent"]);
        tx.commit().await.expect("commits");
        assert_eq!(store.expire(500).await.expect("expires"), EXPIRE_CHUNK as u64 + 9, "with e0 and e2");
        let mut tx = store.begin().await.expect("begins");
        assert_eq!(
            mark(&store, &mut tx, &["recent", "old-0"], 1_001).await,
            ["old-0"],
            "recent kept, old-0 expired"
        );
        assert!(store.ping().await);
    }

    #[tokio::test]
    async fn a_store_created_before_versioning_is_adopted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite:{}", dir.path().join("store.db").display());
        sqlx::any::install_default_drivers();
        let old = AnyPool::connect(&format!("{url}?mode=rwc")).await.expect("opens");
        // The unversioned code ran the statements of the first migration at every start.
        sqlx::raw_sql(include_str!("../migrations/10001_dedupe_marks_and_parked_keys.sql"))
            .execute(&old)
            .await
            .expect("the old tables");
        sqlx::query(
            "INSERT INTO fanout_processed (consumer, event_id, processed_at_ms) VALUES ('c', 'e1', 10)",
        )
        .execute(&old)
        .await
        .expect("an old mark");
        old.close().await;

        let store =
            Store::open(&StoreSettings { url, ..StoreSettings::default() }, "c").await.expect("opens");
        let mut tx = store.begin().await.expect("begins");
        assert_eq!(mark(&store, &mut tx, &["e1", "e2"], 11).await, ["e2"], "the old mark is kept");
        tx.commit().await.expect("commits");
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(store.pool())
            .await
            .expect("reads");
        assert_eq!(versions, [10_001]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_opening_one_postgres_store_together_both_start() {
        let pg = fanout_testkit::Postgres::connect().await.expect("the test PostgreSQL answers");
        let db = pg.database().await.expect("creates a database");
        let settings = StoreSettings { url: db.url(), ..StoreSettings::default() };
        let (a, b) = tokio::join!(Store::open(&settings, "a"), Store::open(&settings, "b"));
        let (a, b) = (a.expect("the first instance starts"), b.expect("the second instance starts"));
        let mut tx = b.begin().await.expect("begins");
        assert_eq!(mark(&b, &mut tx, &["e1"], 10).await, ["e1"]);
        tx.commit().await.expect("commits");
        a.pool().close().await;
        b.pool().close().await;
    }
}
