//! The test kit's per-test PostgreSQL databases are real, separate and dropped afterwards.

use fanout_testkit::Postgres;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn databases_are_separate_and_dropped() {
    let pg = Postgres::connect().await.expect("the test PostgreSQL answers");
    let a = pg.database().await.expect("creates database");
    let b = pg.database().await.expect("creates database");
    assert_ne!(a.name(), b.name());

    let mut conn = PgConnection::connect(&a.url()).await.expect("connects to the new database");
    sqlx::query("CREATE TABLE t (x int)").execute(&mut conn).await.expect("creates table");
    conn.close().await.expect("closes");

    let name = a.name().to_owned();
    drop(a);
    let mut admin = PgConnection::connect(&b.url()).await.expect("connects");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .expect("queries");
    assert_eq!(left, 0, "database {name} survived its guard");
}
