//! Errors of the consumer runtime, and the errors a handler or decoder returns to it.

use std::fmt;

use sqlx::error::ErrorKind;

/// Why the consumer could not start or stopped abnormally.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// The configuration is invalid; the message names the key.
    #[error("invalid consumer configuration: {0}")]
    Config(String),
    /// The idempotency store could not be opened or prepared.
    #[error("consumer store {url}")]
    Store {
        /// The store URL, password removed.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The runtime's tables could not be created or migrated.
    #[error("consumer store {url}")]
    Migration {
        /// The store URL, password removed.
        url: String,
        /// What failed, naming the migration.
        #[source]
        source: fanout_migrate::MigrationError,
    },
    /// A Kafka client could not be created or subscribed.
    #[error("kafka {operation}")]
    Kafka {
        /// What was attempted.
        operation: &'static str,
        /// librdkafka's error, boxed so that rdkafka's major version is not part of this API.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The producer of retry and dead-letter records could not be created.
    #[error("cannot create the retry/dead-letter producer")]
    Producer(#[source] fanout_kafka::ProducerConfigError),
    /// The cluster refused the consumer's credentials.
    #[error("cannot connect to Kafka")]
    Connect(#[source] fanout_kafka::ConnectError),
    /// The retry and dead-letter topics could not be created or were not served in time.
    #[error("retry and dead-letter topics")]
    Topics(#[source] fanout_kafka::AdminError),
    /// The HTTP endpoint could not be bound or failed.
    #[error("http endpoint {listen}")]
    Http {
        /// The configured address.
        listen: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The builder has no handler, or two handlers claim one topic.
    #[error("invalid consumer wiring: {0}")]
    Wiring(String),
    /// A background task of the runtime failed.
    #[error("consumer runtime task failed: {0}")]
    Task(String),
}

fanout_core::debug_as_report!(ConsumerError);

/// What a handler reports when it cannot apply an event. The runtime rolls back the handler's
/// writes (its savepoint) either way.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// May succeed later (a dependency is down, a lock timed out): retried with backoff, then
    /// through the retry topic, then dead-lettered when the attempts are exhausted.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never succeed (the event violates an invariant): dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(String),
    /// A database statement failed (what `?` makes of a `sqlx::Error`), classified by what
    /// failed. Permanent when the same statement for the same event can never succeed: a
    /// constraint violation (unique, foreign key, check, not null; SQLSTATE class 23, SQLite's
    /// CONSTRAINT) or a data error (SQLSTATE class 22, SQLite's MISMATCH and TOOBIG). Transient
    /// otherwise: a lost connection, a pool timeout, I/O, a serialization failure (40001) or
    /// deadlock (40P01), SQLite's BUSY and LOCKED, and anything else that may clear up. A handler
    /// that knows better maps the error itself.
    #[error("{}: database", if database_error_is_permanent(.0) { "permanent" } else { "transient" })]
    Database(#[from] sqlx::Error),
}

fanout_core::debug_as_report!(HandlerError);

impl HandlerError {
    /// A transient error from anything displayable.
    pub fn transient(error: impl fmt::Display) -> Self {
        Self::Transient(error.to_string())
    }

    /// A permanent error from anything displayable.
    pub fn permanent(error: impl fmt::Display) -> Self {
        Self::Permanent(error.to_string())
    }

    /// True for [`HandlerError::Permanent`] and a permanent [`HandlerError::Database`].
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Transient(_) => false,
            Self::Permanent(_) => true,
            Self::Database(error) => database_error_is_permanent(error),
        }
    }

    /// The error and its causes, each once: the text the retry and dead-letter headers carry.
    pub(crate) fn describe(&self) -> String {
        fanout_core::report(self)
    }
}

/// SQLite's primary result codes for a value the statement can never store.
const SQLITE_TOOBIG: i32 = 18;
const SQLITE_CONSTRAINT: i32 = 19;
const SQLITE_MISMATCH: i32 = 20;

/// See [`HandlerError::Database`].
fn database_error_is_permanent(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(database) = error else {
        return false;
    };
    let code = database.code();
    if database.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
        // The code is the SQLSTATE; its first two characters are its class.
        return matches!(code.as_deref().and_then(|code| code.get(..2)), Some("22" | "23"));
    }
    if database.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // The code is SQLite's extended result code; its low byte is the primary code.
        let primary = code.and_then(|code| code.parse::<i32>().ok()).map(|code| code & 0xff);
        return matches!(primary, Some(SQLITE_TOOBIG | SQLITE_CONSTRAINT | SQLITE_MISMATCH));
    }
    matches!(
        database.kind(),
        ErrorKind::UniqueViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation
    )
}

/// Why a payload could not be turned into a typed event.
#[derive(Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a valid payload (no magic byte, truncated, not the schema's shape):
    /// dead-lettered at once.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The payload names a schema id the registry does not know: dead-lettered at once.
    #[error("unknown schema id {0}")]
    UnknownSchema(u32),
    /// The registry could not be asked (down, timed out): retried until it answers; the event is
    /// never dead-lettered for this.
    #[error("schema registry unavailable: {0}")]
    Unavailable(String),
}

fanout_core::debug_as_report!(DecodeError);

impl DecodeError {
    /// True when decoding the same bytes can never succeed.
    pub fn is_poison(&self) -> bool {
        !matches!(self, Self::Unavailable(_))
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{AnyConnection, Connection};

    use super::*;

    /// What a handler's `?` makes of `sql` failing on `conn`.
    async fn failing(conn: &mut AnyConnection, sql: &str) -> HandlerError {
        HandlerError::from(sqlx::raw_sql(sql).execute(conn).await.expect_err(sql))
    }

    #[tokio::test]
    async fn sqlite_constraint_and_data_errors_are_permanent_the_rest_transient() {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:").await.expect("opens");
        sqlx::raw_sql(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL CHECK (name <> ''),
                 parent INTEGER REFERENCES parent (id));
             INSERT INTO t (id, name) VALUES (1, 'a');
             PRAGMA foreign_keys = ON;",
        )
        .execute(&mut conn)
        .await
        .expect("prepares");
        for sql in [
            "INSERT INTO t (id, name) VALUES (1, 'b')",
            "INSERT INTO t (id, name) VALUES (2, NULL)",
            "INSERT INTO t (id, name) VALUES (2, '')",
            "INSERT INTO t (id, name, parent) VALUES (2, 'b', 7)",
            "INSERT INTO t (id, name) VALUES ('not an integer', 'b')",
        ] {
            let error = failing(&mut conn, sql).await;
            assert!(error.is_permanent(), "{sql}: {}", error.describe());
        }
        let error = failing(&mut conn, "INSERT INTO missing_table VALUES (1)").await;
        assert!(!error.is_permanent(), "{}", error.describe());

        let unique = failing(&mut conn, "INSERT INTO t (id, name) VALUES (1, 'b')").await;
        assert_eq!(
            unique.describe(),
            "permanent: database: error returned from database: (code: 1555) UNIQUE constraint failed: t.id",
            "each cause once"
        );
    }

    #[tokio::test]
    async fn postgres_classes_22_and_23_are_permanent_serialization_failures_and_deadlocks_transient() {
        let pg = fanout_testkit::Postgres::connect().await.expect("the test PostgreSQL answers");
        let db = pg.database().await.expect("creates a database");
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(&db.url()).await.expect("connects");
        let raise = |sqlstate: &str| {
            format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$")
        };
        for sqlstate in ["23505", "23503", "23502", "23514", "22001", "22P02"] {
            assert!(failing(&mut conn, &raise(sqlstate)).await.is_permanent(), "{sqlstate}");
        }
        assert!(failing(&mut conn, "SELECT 1 / 0").await.is_permanent(), "division by zero is class 22");
        for sqlstate in ["40001", "40P01", "55P03", "57014", "08006"] {
            assert!(!failing(&mut conn, &raise(sqlstate)).await.is_permanent(), "{sqlstate}");
        }
        conn.close().await.expect("closes");
    }

    #[test]
    fn a_message_leaves_its_cause_to_the_chain() {
        let error = ConsumerError::Http {
            listen: "127.0.0.1:9101".into(),
            source: std::io::Error::other("address in use"),
        };
        assert_eq!(error.to_string(), "http endpoint 127.0.0.1:9101");
        assert_eq!(fanout_core::report(&error), "http endpoint 127.0.0.1:9101: address in use");
    }

    #[test]
    fn failures_to_reach_the_database_are_transient() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into()),
            sqlx::Error::Protocol("connection lost".into()),
        ] {
            let error = HandlerError::from(error);
            assert!(!error.is_permanent(), "{}", error.describe());
            assert!(error.describe().starts_with("transient: database: "), "{}", error.describe());
        }
        assert!(HandlerError::permanent("p").is_permanent());
        assert_eq!(HandlerError::transient("t").describe(), "transient: t");
    }
}
