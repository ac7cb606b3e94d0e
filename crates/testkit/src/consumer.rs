//! The consumer configuration tests start from.

use fanout_consumer::ConsumerConfig;

/// The test broker's address: `FANOUT_TEST_BOOTSTRAP`, or [`DEFAULT_BOOTSTRAP`](crate::DEFAULT_BOOTSTRAP).
pub fn bootstrap() -> String {
    std::env::var("FANOUT_TEST_BOOTSTRAP").unwrap_or_else(|_| crate::DEFAULT_BOOTSTRAP.to_owned())
}

/// A consumer configuration for one test: a unique name starting with `prefix` (its group), the
/// test broker, `store_url`, HTTP on a free port, and commit, linger and retry intervals short
/// enough that retries and dead letters happen within seconds (in-process backoff 20–100 ms, one
/// 300 ms retry-topic tier). A test changes what it exercises from there.
///
/// ```
/// let config = fanout_testkit::consumer_config("orders", "sqlite::memory:");
/// assert!(config.name.starts_with("test-orders-"));
/// assert_eq!(config.http.listen, "127.0.0.1:0");
/// ```
pub fn consumer_config(prefix: &str, store_url: &str) -> ConsumerConfig {
    let mut config = ConsumerConfig::new(crate::unique_name(prefix));
    config.kafka.bootstrap = bootstrap();
    config.store.url = store_url.to_owned();
    config.http.listen = "127.0.0.1:0".to_owned();
    config.processing.commit_interval_ms = 200;
    config.processing.statistics_interval_ms = 500;
    config.processing.batch_linger_ms = 2;
    config.retry.initial_backoff_ms = 20;
    config.retry.max_backoff_ms = 100;
    config.retry.delays_ms = vec![300];
    config
}
