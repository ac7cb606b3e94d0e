//! A single-flight cache: one fetch per key however many tasks miss at once, answers kept for
//! good, "not found" kept for a short time, transient failures never kept.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use tokio::sync::OnceCell;

use crate::RegistryError;

/// Beyond this many entries an insert first drops dead ones (expired "not found", abandoned
/// fetches), so a stream of random bad ids cannot grow the map without bound.
const PRUNE_ABOVE: usize = 4_096;

enum Outcome<V> {
    Found(V),
    Missing { until: Instant, error: RegistryError },
}

type Slot<V> = Arc<OnceCell<Outcome<V>>>;

pub(crate) struct SingleFlight<K, V> {
    entries: RwLock<HashMap<K, Slot<V>>>,
    not_found_ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    pub(crate) fn new(not_found_ttl: Duration) -> Self {
        Self { entries: RwLock::new(HashMap::new()), not_found_ttl }
    }

    /// The cached value, without waiting or fetching.
    pub(crate) fn get_ready(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key)?.get() {
            Some(Outcome::Found(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// Stores a value learnt some other way (e.g. the id a registration returned).
    pub(crate) fn insert(&self, key: K, value: V) {
        let slot = Arc::new(OnceCell::new_with(Some(Outcome::Found(value))));
        self.entries.write().unwrap_or_else(PoisonError::into_inner).insert(key, slot);
    }

    /// Forgets every key matching `pred` (after a delete).
    pub(crate) fn invalidate(&self, mut pred: impl FnMut(&K) -> bool) {
        self.entries.write().unwrap_or_else(PoisonError::into_inner).retain(|k, _| !pred(k));
    }

    /// The value for `key`, fetching it with `fetch` on a miss. Concurrent misses share one fetch.
    pub(crate) async fn get_or_fetch<F, Fut>(&self, key: &K, fetch: F) -> Result<V, RegistryError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, RegistryError>>,
    {
        let slot = match self.fresh_slot(key) {
            Ok(slot) => slot,
            Err(answer) => return answer,
        };
        let ttl = self.not_found_ttl;
        let outcome = slot
            .get_or_try_init(|| async move {
                match fetch().await {
                    Ok(v) => Ok(Outcome::Found(v)),
                    Err(error) if error.is_not_found() && !ttl.is_zero() => {
                        Ok(Outcome::Missing { until: Instant::now() + ttl, error })
                    }
                    Err(error) => Err(error),
                }
            })
            .await?;
        match outcome {
            Outcome::Found(v) => Ok(v.clone()),
            Outcome::Missing { error, .. } => Err(error.clone()),
        }
    }

    /// The slot to wait on, or the answer when it is already known.
    #[allow(clippy::type_complexity)]
    fn fresh_slot(&self, key: &K) -> Result<Slot<V>, Result<V, RegistryError>> {
        {
            let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(slot) = entries.get(key) {
                match slot.get() {
                    Some(Outcome::Found(v)) => return Err(Ok(v.clone())),
                    Some(Outcome::Missing { until, error }) if Instant::now() < *until => {
                        return Err(Err(error.clone()))
                    }
                    Some(Outcome::Missing { .. }) => {}
                    None => return Ok(slot.clone()),
                }
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() > PRUNE_ABOVE {
            let now = Instant::now();
            entries.retain(|_, slot| match slot.get() {
                Some(Outcome::Found(_)) => true,
                Some(Outcome::Missing { until, .. }) => now < *until,
                // Someone is still fetching into it.
                None => Arc::strong_count(slot) > 1,
            });
        }
        let slot = entries.entry(key.clone()).or_default();
        // Another task may have refreshed it between the two locks; an expired one is replaced.
        if matches!(slot.get(), Some(Outcome::Missing { until, .. }) if Instant::now() >= *until) {
            *slot = Slot::default();
        }
        Ok(slot.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn not_found() -> RegistryError {
        RegistryError::Api {
            method: "GET".into(),
            url: "http://r/schemas/ids/9".into(),
            status: 404,
            error_code: 40403,
            message: "Schema not found".into(),
        }
    }

    fn unavailable() -> RegistryError {
        RegistryError::Unavailable {
            method: "GET".into(),
            path: "/x".into(),
            attempts: 1,
            last: "refused".into(),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_fetch_once() {
        let cache = Arc::new(SingleFlight::<u32, u32>::new(Duration::from_secs(5)));
        let calls = Arc::new(AtomicU32::new(0));
        let (release, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, calls, mut gate) = (cache.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&7, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(70)
                    })
                    .await
            }));
        }
        tokio::task::yield_now().await;
        release.send_replace(true);
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), 70);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get_ready(&7), Some(70));
    }

    #[tokio::test]
    async fn not_found_is_cached_until_the_ttl_expires() {
        let cache = SingleFlight::<u32, u32>::new(Duration::from_millis(50));
        let calls = AtomicU32::new(0);
        for _ in 0..3 {
            let err = cache
                .get_or_fetch(&9, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err(not_found())
                })
                .await
                .unwrap_err();
            assert_eq!(err.error_code(), Some(40403));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        while cache.get_or_fetch(&9, || async { Ok(1) }).await.is_err() {
            assert!(Instant::now() < deadline, "the not-found answer never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cache.get_ready(&9), Some(1));
    }

    #[tokio::test]
    async fn transient_errors_are_not_cached() {
        let cache = SingleFlight::<u32, u32>::new(Duration::from_secs(5));
        assert!(cache.get_or_fetch(&1, || async { Err(unavailable()) }).await.is_err());
        assert_eq!(cache.get_or_fetch(&1, || async { Ok(5) }).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn zero_ttl_disables_negative_caching() {
        let cache = SingleFlight::<u32, u32>::new(Duration::ZERO);
        assert!(cache.get_or_fetch(&1, || async { Err(not_found()) }).await.is_err());
        assert_eq!(cache.get_or_fetch(&1, || async { Ok(5) }).await.unwrap(), 5);
    }

    #[tokio::test]
    async fn many_bad_keys_do_not_grow_without_bound() {
        let cache = SingleFlight::<u32, u32>::new(Duration::ZERO);
        for key in 0..20_000 {
            let _ = cache.get_or_fetch(&key, || async { Err(not_found()) }).await;
        }
        let len = cache.entries.read().unwrap().len();
        assert!(len <= PRUNE_ABOVE + 1, "{len} entries");
        cache.insert(1, 2);
        cache.invalidate(|k| *k == 1);
        assert_eq!(cache.get_ready(&1), None);
    }
}
