//! Which instance writes: a leader chosen through Kafka's own group protocol, as Confluent's
//! registry does. Every instance joins the consumer group `_fanout-registry-<topic>` subscribed to
//! the state topic's single partition; the member the group assigns partition 0 is the leader.
//! Its `client.id` is its advertised URL, so a follower finds where to forward writes by
//! describing the group. A leader that dies leaves the group (or misses its session, 6 s) and
//! the partition moves to another member.
//!
//! The election is not the safety net: a leader paused past its session may write once more
//! after its successor started. Every instance folds the log in the same order and refuses a
//! record that contradicts an earlier one (`State::contradicts`), so no id ever names two schemas
//! whatever the election does.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::watch;

use crate::config::RegistryConfig;
use crate::error::RegistryError;

/// How often the election thread polls the group and looks the leader up.
const TICK: Duration = Duration::from_millis(200);
/// A known leader elsewhere is looked up again every this many ticks.
const LOOKUP_EVERY: u32 = 5;
/// How long a member may stay silent before the group gives its partition to another.
const SESSION_TIMEOUT_MS: &str = "6000";

/// Who leads, as this instance sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leader {
    /// Not known yet (joining the group, or the group is rebalancing).
    Unknown,
    /// This instance: it applies writes itself.
    Me,
    /// Another instance, at this URL: writes are forwarded there.
    At(String),
}

/// The election running beside the server; stops when dropped.
#[derive(Debug)]
pub struct Election {
    leader: watch::Receiver<Leader>,
    me: Arc<str>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The group the instances serving `topic` join.
pub fn group_of(topic: &str) -> String {
    format!("_fanout-registry-{topic}")
}

impl Election {
    /// Joins the election for `config.topic`, advertising `me` as this instance's URL.
    pub fn start(config: &RegistryConfig, me: &str) -> Result<Self, RegistryError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.bootstrap)
            .set("group.id", group_of(&config.topic))
            .set("client.id", me)
            .set("enable.auto.commit", "false")
            // Only new records are fetched, and ignored: the election needs the assignment.
            .set("auto.offset.reset", "latest")
            .set("session.timeout.ms", SESSION_TIMEOUT_MS)
            .set("heartbeat.interval.ms", "1000")
            // Sticky: an instance joining or leaving moves leadership only when the leader left.
            .set("partition.assignment.strategy", "cooperative-sticky");
        for (key, value) in &config.kafka_properties {
            client.set(key, value);
        }
        let consumer: BaseConsumer = client
            .create()
            .map_err(|e| RegistryError::kafka("election consumer creation", fanout_core::report(&e)))?;
        consumer
            .subscribe(&[&config.topic])
            .map_err(|e| RegistryError::kafka("election subscription", fanout_core::report(&e)))?;
        let (tell, leader) = watch::channel(Leader::Unknown);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (stop, topic, group, me) =
                (stop.clone(), config.topic.clone(), group_of(&config.topic), me.to_owned());
            std::thread::Builder::new()
                .name("registry-election".into())
                .spawn(move || run(consumer, &topic, &group, &me, &tell, &stop))
                .map_err(|e| RegistryError::Task(format!("starting the election thread: {e}")))?
        };
        Ok(Self { leader, me: Arc::from(me), stop, thread: Some(thread) })
    }

    /// Who leads now.
    pub fn leader(&self) -> Leader {
        self.leader.borrow().clone()
    }

    /// This instance's advertised URL.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Who leads, once known, waiting at most `limit`; [`Leader::Unknown`] after that.
    pub async fn known_leader(&self, limit: Duration) -> Leader {
        let mut leader = self.leader.clone();
        let known = match tokio::time::timeout(limit, leader.wait_for(|l| *l != Leader::Unknown)).await {
            Ok(Ok(known)) => known.clone(),
            _ => Leader::Unknown,
        };
        known
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        // The thread leaves the group as it ends, so the others need not wait out the session.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    consumer: BaseConsumer,
    topic: &str,
    group: &str,
    me: &str,
    tell: &watch::Sender<Leader>,
    stop: &std::sync::atomic::AtomicBool,
) {
    let mut ticks = 0u32;
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        // Serves the group protocol (joins, rebalances, heartbeats); records are ignored.
        let _ = consumer.poll(TICK);
        ticks = ticks.wrapping_add(1);
        let mine = consumer
            .assignment()
            .is_ok_and(|assigned| assigned.elements_for_topic(topic).iter().any(|p| p.partition() == 0));
        let known_elsewhere = matches!(*tell.borrow(), Leader::At(_));
        let leader = if mine {
            Leader::Me
        } else if known_elsewhere && !ticks.is_multiple_of(LOOKUP_EVERY) {
            // Describing the group costs two requests: a known leader is looked up once a second.
            continue;
        } else {
            match consumer.fetch_group_list(Some(group), Duration::from_secs(2)) {
                Ok(groups) => groups
                    .groups()
                    .iter()
                    .flat_map(|g| g.members())
                    .find(|m| m.assignment().is_some_and(|a| assigns_partition_zero(a, topic)))
                    .map(|m| m.client_id().to_owned())
                    .filter(|url| url != me)
                    .map_or(Leader::Unknown, Leader::At),
                Err(_) => Leader::Unknown,
            }
        };
        tell.send_if_modified(|current| {
            let changed = *current != leader;
            if changed {
                tracing::info!(?leader, "schema registry leadership changed");
                *current = leader;
            }
            changed
        });
    }
    consumer.unsubscribe();
}

/// Whether a consumer-protocol assignment (`version: i16, [topic: string, [partition: i32]],
/// user_data: bytes`) gives partition 0 of `topic`.
fn assigns_partition_zero(assignment: &[u8], topic: &str) -> bool {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = rest;
        Some(head)
    }
    fn int(bytes: &mut &[u8], n: usize) -> Option<i64> {
        let raw = take(bytes, n)?;
        Some(raw.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b)))
    }
    let mut bytes = assignment;
    let parse = |bytes: &mut &[u8]| -> Option<bool> {
        let _version = int(bytes, 2)?;
        let topics = int(bytes, 4)?;
        for _ in 0..topics.max(0) {
            let name_len = usize::try_from(int(bytes, 2)?).ok()?;
            let name = take(bytes, name_len)?;
            let partitions = int(bytes, 4)?;
            for _ in 0..partitions.max(0) {
                let partition = int(bytes, 4)?;
                if name == topic.as_bytes() && partition == 0 {
                    return Some(true);
                }
            }
        }
        Some(false)
    };
    parse(&mut bytes).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut out = vec![0, 1];
        out.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            out.extend((name.len() as i16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                out.extend(p.to_be_bytes());
            }
        }
        out.extend((-1i32).to_be_bytes()); // no user data
        out
    }

    #[test]
    fn finds_partition_zero_of_the_topic_only() {
        assert!(assigns_partition_zero(&assignment(&[("_schemas", &[0])]), "_schemas"));
        assert!(!assigns_partition_zero(&assignment(&[("_schemas", &[1])]), "_schemas"));
        assert!(!assigns_partition_zero(&assignment(&[("other", &[0])]), "_schemas"));
        assert!(assigns_partition_zero(&assignment(&[("other", &[0]), ("_schemas", &[3, 0])]), "_schemas"));
        assert!(!assigns_partition_zero(&[], "_schemas"));
        // Truncated or lying lengths are no assignment, not a panic.
        let whole = assignment(&[("_schemas", &[0])]);
        for cut in 0..whole.len() - 4 {
            assert!(!assigns_partition_zero(&whole[..cut], "_schemas"), "cut at {cut}");
        }
        assert!(!assigns_partition_zero(&[0, 1, 0x7f, 0xff, 0xff, 0xff], "_schemas"));
    }
}
