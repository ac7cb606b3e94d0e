//! Migrations against real databases: instances and components starting together on one
//! PostgreSQL database, a failed migration, and the rows of other components and newer builds.

use std::time::Duration;

use fanout_migrate::{apply, Blocks, MigrationError};
use fanout_testkit::Postgres;
use sqlx::{postgres::PgPoolOptions, PgPool, Row, SqlitePool};

async fn pg_pool(options: sqlx::postgres::PgConnectOptions) -> PgPool {
    PgPoolOptions::new().max_connections(2).connect_with(options).await.expect("connects")
}

async fn versions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(pool)
        .await
        .expect("reads the bookkeeping")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_and_components_starting_together_on_one_postgres_database_all_succeed() {
    let pg = Postgres::connect().await.expect("the test PostgreSQL answers");
    let db = pg.database().await.expect("creates a database");
    // Three instances of each of two components, each instance with its own pool, as separate
    // processes would be.
    let mut starts = Vec::new();
    for _ in 0..3 {
        let (notes, tags) = (pg_pool(db.options()).await, pg_pool(db.options()).await);
        starts.push(tokio::spawn(async move {
            apply(&notes, "notes", Blocks::Service, &sqlx::migrate!("tests/migrations/notes")).await
        }));
        starts.push(tokio::spawn(async move {
            apply(&tags, "tags", Blocks::Service, &sqlx::migrate!("tests/migrations/tags")).await
        }));
    }
    for start in starts {
        start.await.expect("the task ran").expect("every instance migrates");
    }
    let pool = pg_pool(db.options()).await;
    assert_eq!(versions(&pool).await, [9_010_001, 9_010_002, 9_020_001]);
    sqlx::query("INSERT INTO notes (id, body, author) VALUES (1, 'b', 'a')")
        .execute(&pool)
        .await
        .expect("both of notes' migrations ran");
    sqlx::query("INSERT INTO tags (name) VALUES ('t')").execute(&pool).await.expect("tags exists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_is_rolled_back_and_leaves_no_lock_behind() {
    let pg = Postgres::connect().await.expect("the test PostgreSQL answers");
    let db = pg.database().await.expect("creates a database");
    let failing = pg_pool(db.options()).await;
    let err = apply(&failing, "broken", Blocks::Service, &sqlx::migrate!("tests/migrations/broken"))
        .await
        .expect_err("NOT SQL fails");
    assert!(matches!(err, MigrationError::Failed { .. }), "{err}");
    assert_eq!(err.to_string(), "migrating the tables of broken");

    // The failing pool stays open: had its connection gone back to it holding sqlx's session
    // lock, this other instance would wait forever.
    let other = pg_pool(db.options()).await;
    let notes = apply(&other, "notes", Blocks::Service, &sqlx::migrate!("tests/migrations/notes"));
    tokio::time::timeout(Duration::from_secs(20), notes)
        .await
        .expect("the lock was released")
        .expect("migrates");
    let half_done: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('half_done')::text").fetch_one(&other).await.expect("queries");
    assert_eq!(half_done, None, "the failed migration's first statement was rolled back");
    assert_eq!(versions(&other).await, [9_010_001, 9_010_002]);
    failing.close().await;
}

#[tokio::test]
async fn other_components_and_newer_builds_rows_are_left_alone_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}?mode=rwc", dir.path().join("m.db").display());
    let pool = SqlitePool::connect(&url).await.expect("opens");
    // A table created before versioning: the first migration adopts it.
    sqlx::query("CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await
        .expect("creates");
    sqlx::query("INSERT INTO notes (id, body) VALUES (1, 'kept')").execute(&pool).await.expect("inserts");
    apply(&pool, "tags", Blocks::Service, &sqlx::migrate!("tests/migrations/tags")).await.expect("tags");
    apply(&pool, "notes", Blocks::Service, &sqlx::migrate!("tests/migrations/notes")).await.expect("notes");
    // Restarted: nothing pending, and the other component's row is no error.
    apply(&pool, "notes", Blocks::Service, &sqlx::migrate!("tests/migrations/notes")).await.expect("again");
    // A newer build of tags applied a version this build does not have: a warning, not a failure.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9020002, 'newer', TRUE, x'00', 0)",
    )
    .execute(&pool)
    .await
    .expect("inserts");
    apply(&pool, "tags", Blocks::Service, &sqlx::migrate!("tests/migrations/tags"))
        .await
        .expect("older build");

    let row =
        sqlx::query("SELECT body, author FROM notes WHERE id = 1").fetch_one(&pool).await.expect("reads");
    assert_eq!(row.get::<String, _>(0), "kept");
    assert_eq!(row.get::<Option<String>, _>(1), None);
}
