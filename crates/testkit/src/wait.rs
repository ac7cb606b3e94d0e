//! Waiting for a condition with a deadline: the only way tests synchronise with the system.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(50);

/// Checks `check` every 50 ms until it returns `Ok(true)`; fails with the first error it returns,
/// or after `limit` with a message saying what was awaited.
///
/// ```no_run
/// # async fn example() -> anyhow::Result<()> {
/// use std::time::Duration;
/// let mut polls = 0;
/// fanout_testkit::wait_until(Duration::from_secs(5), "the third poll", || {
///     polls += 1;
///     let done = polls >= 3;
///     async move { Ok(done) }
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}
