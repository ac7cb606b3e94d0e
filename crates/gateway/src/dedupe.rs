//! The dedupe store: which callbacks were published, by source and provider event id, in
//! PostgreSQL so that every instance sees them and they survive restarts.
//!
//! Lookups and records are batched: requests arriving while a query runs go together in the next
//! one (one `UNNEST` query for up to [`MAX_BATCH`]), so a few connections carry thousands of
//! callbacks a second and a lone request still goes at once.

use std::{future::Future, sync::Arc, time::Duration};

use sqlx::{postgres::PgPoolOptions, PgPool};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::GatewayError;

/// The most keys one query carries.
const MAX_BATCH: usize = 512;

/// The most rows one statement of the sweep deletes.
const SWEEP_SLICE: i64 = 10_000;

/// The gateway's migrations (`crates/gateway/migrations`, block [`fanout_migrate::GATEWAY_BLOCK`]).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// A callback published: where, and when.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    pub(crate) source: Arc<str>,
    pub(crate) provider_event_id: String,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) at_ms: i64,
}

type Reply<A> = oneshot::Sender<Result<A, Arc<sqlx::Error>>>;

/// Batches one kind of query.
struct Batcher<Q, A> {
    requests: mpsc::Sender<(Q, Reply<A>)>,
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Q, A> {
    /// Runs `query` over batches of requests, at most `concurrency` at once.
    fn spawn<F, Fut>(pool: PgPool, concurrency: usize, query: F) -> Self
    where
        F: Fn(PgPool, Vec<Q>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<A>, sqlx::Error>> + Send + 'static,
    {
        let (requests, mut incoming) = mpsc::channel::<(Q, Reply<A>)>(MAX_BATCH * 4);
        let query = Arc::new(query);
        let slots = Arc::new(Semaphore::new(concurrency));
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                // Waiting for a free connection first lets the batch grow meanwhile.
                let Ok(slot) = slots.clone().acquire_owned().await else { return };
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match incoming.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (pool, query) = (pool.clone(), query.clone());
                tokio::spawn(async move {
                    let (keys, replies): (Vec<Q>, Vec<Reply<A>>) = batch.into_iter().unzip();
                    match query(pool, keys).await {
                        Ok(answers) => {
                            for (reply, answer) in replies.into_iter().zip(answers) {
                                let _ = reply.send(Ok(answer));
                            }
                        }
                        Err(error) => {
                            let error = Arc::new(error);
                            for reply in replies {
                                let _ = reply.send(Err(error.clone()));
                            }
                        }
                    }
                    drop(slot);
                });
            }
        });
        Self { requests }
    }

    async fn ask(&self, key: Q) -> Result<A, Arc<sqlx::Error>> {
        let (reply, answer) = oneshot::channel();
        // The batcher lives as long as the store; were it gone, the store is closing.
        let closed = || Arc::new(sqlx::Error::PoolClosed);
        self.requests.send((key, reply)).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

/// What the store knows of a callback: whether it was published, and where its requester wants
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Known {
    pub(crate) published: bool,
    pub(crate) reply_topic: Option<String>,
}

/// A lookup: source, provider event id, correlation id.
type Key = (Arc<str>, String, String);

/// The dedupe store.
pub(crate) struct Dedupe {
    pool: PgPool,
    lookups: Batcher<Key, Known>,
    records: Batcher<Published, ()>,
}

impl Dedupe {
    /// Connects, and creates or migrates the table.
    pub(crate) async fn open(url: &str, max_connections: u32) -> Result<Self, GatewayError> {
        let unreachable = |source: sqlx::Error| GatewayError::Store {
            url: fanout_config::redact_url(url),
            source: Box::new(source),
        };
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(5))
            // Every batch acquires a connection, and sqlx's check before handing one out is a
            // round trip of its own, on the callbacks' path (sqlx pings again as it takes the
            // connection back). A connection that died idle fails its batch instead: answered
            // 503, retried by the provider, and the pool replaces the connection.
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(unreachable)?;
        fanout_migrate::apply(
            &pool,
            "gateway",
            fanout_migrate::Blocks::Only(fanout_migrate::GATEWAY_BLOCK),
            &MIGRATOR,
        )
        .await?;
        // Half the connections each, so a burst of records never starves lookups.
        let each = (max_connections.max(2) / 2) as usize;
        let lookups = Batcher::spawn(pool.clone(), each, lookup);
        let records = Batcher::spawn(pool.clone(), each, record);
        Ok(Self { pool, lookups, records })
    }

    /// Whether `source`'s callback `provider_event_id` was published (and not yet forgotten),
    /// and the reply topic registered for its correlation id, if any.
    pub(crate) async fn lookup(
        &self,
        source: &Arc<str>,
        provider_event_id: &str,
        correlation_id: &str,
    ) -> Result<Known, Arc<sqlx::Error>> {
        self.lookups.ask((source.clone(), provider_event_id.to_owned(), correlation_id.to_owned())).await
    }

    /// Sends the callbacks of `source` answering `correlation_id` to `reply_topic` until
    /// `expires_at_ms`; registering again replaces the route.
    pub(crate) async fn route(
        &self,
        source: &str,
        correlation_id: &str,
        reply_topic: &str,
        expires_at_ms: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO fanout_gateway_routes (source, correlation_id, reply_topic, expires_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (source, correlation_id) \
             DO UPDATE SET reply_topic = EXCLUDED.reply_topic, expires_at_ms = EXCLUDED.expires_at_ms",
        )
        .bind(source)
        .bind(correlation_id)
        .bind(reply_topic)
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets routes that expired before `now_ms`; how many.
    pub(crate) async fn forget_routes(&self, now_ms: i64) -> Result<u64, sqlx::Error> {
        let done = sqlx::query("DELETE FROM fanout_gateway_routes WHERE expires_at_ms < $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Remembers a published callback; one remembered already is left as it was.
    pub(crate) async fn record(&self, published: Published) -> Result<(), Arc<sqlx::Error>> {
        self.records.ask(published).await
    }

    /// Forgets callbacks published before `before_ms`; how many.
    pub(crate) async fn forget_before(&self, before_ms: i64) -> Result<u64, sqlx::Error> {
        // In slices: an hour's worth at thousands a second is millions of rows, too many for one
        // transaction on the pool the callbacks use.
        let mut forgotten = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM fanout_gateway_callbacks WHERE ctid IN \
                 (SELECT ctid FROM fanout_gateway_callbacks WHERE published_at_ms < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(SWEEP_SLICE)
            .execute(&self.pool)
            .await?;
            forgotten += done.rows_affected();
            if done.rows_affected() < SWEEP_SLICE as u64 {
                return Ok(forgotten);
            }
        }
    }

    /// Whether the database answers.
    pub(crate) async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

async fn lookup(pool: PgPool, keys: Vec<Key>) -> Result<Vec<Known>, sqlx::Error> {
    let sources: Vec<&str> = keys.iter().map(|(s, _, _)| &**s).collect();
    let ids: Vec<&str> = keys.iter().map(|(_, i, _)| i.as_str()).collect();
    let correlations: Vec<&str> = keys.iter().map(|(_, _, c)| c.as_str()).collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let found: Vec<(i64, bool, Option<String>)> = sqlx::query_as(
        "SELECT k.n, c.source IS NOT NULL, r.reply_topic \
         FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(source, id, correlation, n) \
         LEFT JOIN fanout_gateway_callbacks c ON c.source = k.source AND c.provider_event_id = k.id \
         LEFT JOIN fanout_gateway_routes r ON r.source = k.source AND r.correlation_id = k.correlation \
           AND r.expires_at_ms >= $4",
    )
    .bind(&sources)
    .bind(&ids)
    .bind(&correlations)
    .bind(now_ms)
    .fetch_all(&pool)
    .await?;
    let mut answers = vec![Known::default(); keys.len()];
    for (n, published, reply_topic) in found {
        if let Some(answer) = usize::try_from(n - 1).ok().and_then(|i| answers.get_mut(i)) {
            *answer = Known { published, reply_topic };
        }
    }
    Ok(answers)
}

async fn record(pool: PgPool, rows: Vec<Published>) -> Result<Vec<()>, sqlx::Error> {
    let sources: Vec<&str> = rows.iter().map(|r| &*r.source).collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.provider_event_id.as_str()).collect();
    let topics: Vec<&str> = rows.iter().map(|r| &*r.topic).collect();
    let partitions: Vec<i32> = rows.iter().map(|r| r.partition).collect();
    let offsets: Vec<i64> = rows.iter().map(|r| r.offset).collect();
    let at: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
    sqlx::query(
        "INSERT INTO fanout_gateway_callbacks \
         (source, provider_event_id, topic, kafka_partition, kafka_offset, published_at_ms) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], $5::int8[], $6::int8[]) \
         ON CONFLICT (source, provider_event_id) DO NOTHING",
    )
    .bind(&sources)
    .bind(&ids)
    .bind(&topics)
    .bind(&partitions)
    .bind(&offsets)
    .bind(&at)
    .execute(&pool)
    .await?;
    Ok(vec![(); rows.len()])
}
