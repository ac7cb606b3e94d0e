//! The bounded topic reader: a topic (or some of its partitions) read from its oldest retained
//! record, or an offset, up to the end it had when the read started, and then it stops.
//!
//! Records written after the start are left for the next read, so a read of a busy topic ends,
//! and a read of an empty one returns at once. The reader is assigned its partitions and never
//! commits: it joins no consumer group and leaves nothing behind in the cluster, however often
//! it reads.

use std::{
    collections::HashMap,
    ops::ControlFlow,
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    error::KafkaError,
    message::{BorrowedMessage, Headers as _},
    types::RDKafkaErrorCode,
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
};

/// A record as fetched, copied out of the client so it can outlive the poll: key, payload and
/// headers byte for byte (a dead letter must carry exactly what was published).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
    /// The key, byte for byte.
    pub key: Option<Vec<u8>>,
    /// The value, byte for byte.
    pub payload: Option<Vec<u8>>,
    /// The headers, in order; `None` values are null headers.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// The record's timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl FetchedRecord {
    /// Copies a message a consumer polled.
    pub fn from_message(message: &BorrowedMessage<'_>) -> Self {
        let headers = message
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            headers,
            timestamp_ms: message.timestamp().to_millis(),
        }
    }

    /// The value of the first header named `name`, as text (`None` when absent, null or not
    /// UTF-8).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.as_deref())
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The value of the first header named `name`, parsed as a decimal integer.
    pub fn header_i64(&self, name: &str) -> Option<i64> {
        self.header(name).and_then(|value| value.trim().parse().ok())
    }
}

/// Why a topic could not be read to its end.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The reading client could not be created.
    #[error("cannot create a Kafka client to read {topic}")]
    Client {
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// The topic does not exist (or has no partition to read).
    #[error("topic {topic} does not exist")]
    UnknownTopic {
        /// The topic.
        topic: String,
    },
    /// The broker reported an error for the topic itself (e.g. `TopicAuthorizationFailed`).
    #[error("topic {topic}: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's error code.
        code: RDKafkaErrorCode,
    },
    /// A request of the read failed: the cluster did not answer, or refused it.
    #[error("cannot {operation} of {topic}")]
    Kafka {
        /// What was asked, e.g. `fetch the metadata`.
        operation: &'static str,
        /// The topic.
        topic: String,
        /// librdkafka's error.
        #[source]
        source: KafkaError,
    },
    /// No record arrived for the read's timeout although some partitions had not reached their
    /// end.
    #[error(
        "reading {topic} stalled: no record for {waited:?} after {read} records; partitions {pending:?} \
         did not reach their end"
    )]
    Stalled {
        /// The topic.
        topic: String,
        /// How long no record came.
        waited: Duration,
        /// Records read until then.
        read: usize,
        /// The partitions that did not reach their end, in order.
        pending: Vec<i32>,
    },
    /// A read up to an offset ([`TopicRead::until_offset`]) waited its timeout for the records
    /// before it to become readable (a transaction stayed open, or the offset is past the log).
    #[error(
        "reading {topic} partition {partition} up to offset {until}: only {end} readable after {waited:?}"
    )]
    Unstable {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset the read was to reach.
        until: i64,
        /// The readable end when the read gave up.
        end: i64,
        /// How long it waited.
        waited: Duration,
    },
}

fanout_core::debug_as_report!(ReadError);

/// A read of `topic` up to the end it has when the read starts.
///
/// ```no_run
/// # async fn example() -> Result<(), fanout_kafka::ReadError> {
/// let config = fanout_kafka::client_config(&fanout_config::KafkaSettings::default());
/// let records = fanout_kafka::TopicRead::new("post.published").read(&config).await?;
/// println!("{} records", records.len());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TopicRead {
    topic: String,
    partitions: Option<Vec<i32>>,
    from: Option<i64>,
    from_time: Option<i64>,
    until: Option<i64>,
    settled: bool,
    timeout: Duration,
}

impl TopicRead {
    /// Every partition of `topic`, from its oldest retained record, waiting up to 10 s for each
    /// answer of the cluster and between two records.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            partitions: None,
            from: None,
            from_time: None,
            until: None,
            settled: false,
            timeout: Duration::from_secs(10),
        }
    }

    /// Only these partitions.
    pub fn partitions(mut self, partitions: impl IntoIterator<Item = i32>) -> Self {
        self.partitions = Some(partitions.into_iter().collect());
        self
    }

    /// From `offset` in each partition (or the oldest retained record, when that is later).
    pub fn from_offset(mut self, offset: i64) -> Self {
        self.from = Some(offset);
        self
    }

    /// From the first record stamped at or after `ms` (Unix milliseconds) in each partition, as
    /// the broker's time index finds it; a partition with no such record is not read. Combined
    /// with [`TopicRead::from_offset`], the later of the two.
    pub fn from_timestamp(mut self, ms: i64) -> Self {
        self.from_time = Some(ms);
        self
    }

    /// Up to `end` (exclusive) in each partition, even if that is past the end the partition
    /// had when the read started: the read first waits (up to the timeout) until every record
    /// before `end` is readable. For a `read_committed` client that is until no transaction
    /// begun before `end` is still open, so the read sees exactly what was committed before it.
    pub fn until_offset(mut self, end: i64) -> Self {
        self.until = Some(end);
        self
    }

    /// Up to each partition's high watermark when the read starts, transactions still open then
    /// included: the read waits (as [`TopicRead::until_offset`]) until they end, so a
    /// `read_committed` client sees whatever they committed.
    pub fn settled(mut self) -> Self {
        self.settled = true;
        self
    }

    /// How long to wait for each answer of the cluster (metadata, end offsets) and between two
    /// records before giving up with [`ReadError::Stalled`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The first offset of `partition` stamped at or after `ms`; `None` when there is none.
    fn offset_for_time<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        partition: i32,
        ms: i64,
    ) -> Result<Option<i64>, ReadError> {
        let topic = self.topic.as_str();
        let kafka = |source: KafkaError| ReadError::Kafka {
            operation: "look up offsets by time",
            topic: topic.to_owned(),
            source,
        };
        let mut query = TopicPartitionList::new();
        query.add_partition_offset(topic, partition, Offset::Offset(ms)).map_err(kafka)?;
        let found = consumer.offsets_for_times(query, self.timeout).map_err(kafka)?;
        let offset = found.find_partition(topic, partition).map(|element| element.offset());
        Ok(match offset {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        })
    }

    /// Every record in range, in offset order per partition (partitions one after another).
    /// Reads off the async workers: the client's poll blocks.
    pub async fn read(&self, config: &ClientConfig) -> Result<Vec<FetchedRecord>, ReadError> {
        let (read, config) = (self.clone(), config.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let mut records = Vec::new();
            read.read_blocking(&config, |record| {
                records.push(record);
                ControlFlow::Continue(())
            })
            .map(|()| records)
        })
        .await;
        let mut records = match joined {
            Ok(result) => result?,
            Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
            // Cancelled only when the runtime shuts down; nobody waits for the answer then.
            Err(_) => Vec::new(),
        };
        records.sort_by_key(|r| (r.partition, r.offset));
        Ok(records)
    }

    /// Reads on this thread (it blocks), handing each record to `each` as it arrives, partitions
    /// interleaved; `each` returns [`ControlFlow::Break`] to stop early.
    pub fn read_blocking(
        &self,
        config: &ClientConfig,
        mut each: impl FnMut(FetchedRecord) -> ControlFlow<()>,
    ) -> Result<(), ReadError> {
        let topic = self.topic.as_str();
        let kafka = |operation: &'static str| {
            move |source: KafkaError| ReadError::Kafka { operation, topic: topic.to_owned(), source }
        };
        let mut config = config.clone();
        // Assigned, never subscribed, never committed: the id only satisfies librdkafka.
        config
            .set("group.id", format!("fanout-read-{topic}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer<EndIsNotAnError> = config
            .create_with_context(EndIsNotAnError)
            .map_err(|source| ReadError::Client { topic: topic.to_owned(), source })?;
        let partitions = match &self.partitions {
            Some(partitions) => partitions.clone(),
            None => partitions(&consumer, topic, self.timeout)?,
        };

        // The high watermarks, which a read_committed client is not told.
        let written = if self.settled {
            let mut uncommitted = config.clone();
            uncommitted.set("isolation.level", "read_uncommitted");
            Some(
                uncommitted
                    .create_with_context::<_, BaseConsumer<EndIsNotAnError>>(EndIsNotAnError)
                    .map_err(|source| ReadError::Client { topic: topic.to_owned(), source })?,
            )
        } else {
            None
        };

        // The end each partition has now: the read stops there.
        let mut ends: HashMap<i32, i64> = HashMap::new();
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            // A read_committed client is told the last stable offset here, not the high
            // watermark: waiting for it to reach `until` waits for open transactions to end.
            let waiting = Instant::now();
            let until = match &written {
                Some(uncommitted) => Some(
                    uncommitted
                        .fetch_watermarks(topic, partition, self.timeout)
                        .map_err(kafka("fetch the high watermarks"))?
                        .1,
                ),
                None => self.until,
            };
            let (low, high) = loop {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, self.timeout)
                    .map_err(kafka("fetch the end offsets"))?;
                match until {
                    Some(until) if high < until => {
                        if waiting.elapsed() > self.timeout {
                            return Err(ReadError::Unstable {
                                topic: topic.to_owned(),
                                partition,
                                until,
                                end: high,
                                waited: self.timeout,
                            });
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Some(until) => break (low, until),
                    None => break (low, high),
                }
            };
            let mut start = self.from.map_or(low, |from| from.max(low));
            if let Some(ms) = self.from_time {
                match self.offset_for_time(&consumer, partition, ms)? {
                    Some(offset) => start = start.max(offset),
                    None => continue,
                }
            }
            if high > start {
                ends.insert(partition, high);
                assignment
                    .add_partition_offset(topic, partition, Offset::Offset(start))
                    .map_err(kafka("assign the partitions"))?;
            }
        }
        if ends.is_empty() {
            return Ok(());
        }
        consumer.assign(&assignment).map_err(kafka("assign the partitions"))?;

        let mut read = 0usize;
        let mut last_progress = Instant::now();
        while !ends.is_empty() {
            let message = match consumer.poll(Duration::from_millis(100)) {
                None => {
                    if last_progress.elapsed() > self.timeout {
                        let mut pending: Vec<i32> = ends.keys().copied().collect();
                        pending.sort_unstable();
                        return Err(ReadError::Stalled {
                            topic: topic.to_owned(),
                            waited: self.timeout,
                            read,
                            pending,
                        });
                    }
                    continue;
                }
                // The end of a partition; also covers ends that are not a record (a transaction
                // marker, a compacted-away tail).
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    ends.remove(&partition);
                    continue;
                }
                Some(Err(error)) => return Err(kafka("read")(error)),
                Some(Ok(message)) => message,
            };
            last_progress = Instant::now();
            let partition = message.partition();
            let Some(&end) = ends.get(&partition) else { continue };
            if message.offset() >= end {
                // Written after the read started: left for the next one.
                ends.remove(&partition);
                continue;
            }
            if message.offset() + 1 >= end {
                ends.remove(&partition);
            }
            read += 1;
            if each(FetchedRecord::from_message(&message)).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// A reader's client context: librdkafka also reports each partition's end as a global error,
/// which its default context logs as an ERROR; for a reader it is the expected end.
struct EndIsNotAnError;

impl ClientContext for EndIsNotAnError {
    fn error(&self, error: KafkaError, reason: &str) {
        if !is_end_of_partition(&error) {
            tracing::warn!(error = %error, reason, "topic read: librdkafka error");
        }
    }
}

impl ConsumerContext for EndIsNotAnError {}

/// Whether librdkafka reports the end of a partition: as the consumer's event, or (polled from
/// the client's main queue, or handed to a context's `error`) as a global error. Reaching the end
/// is how a reader learns it is caught up: never an error to log.
pub fn is_end_of_partition(error: &KafkaError) -> bool {
    matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF))
}

/// The partitions of `topic`, or [`ReadError::UnknownTopic`] when it does not exist.
fn partitions<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, ReadError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|source| ReadError::Kafka {
        operation: "fetch the metadata",
        topic: topic.to_owned(),
        source,
    })?;
    let unknown = || ReadError::UnknownTopic { topic: topic.to_owned() };
    let found = metadata.topics().iter().find(|t| t.name() == topic).ok_or_else(unknown)?;
    match found.error().map(RDKafkaErrorCode::from) {
        None => {}
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => return Err(unknown()),
        Some(code) => return Err(ReadError::Topic { topic: topic.to_owned(), code }),
    }
    let partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        return Err(unknown());
    }
    Ok(partitions)
}

/// The partitions of `topic`, asking the cluster at most `timeout`; [`ReadError::UnknownTopic`]
/// when it does not exist. Blocking: call it off the async workers.
pub fn topic_partitions(
    config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, ReadError> {
    let consumer: BaseConsumer =
        config.create().map_err(|source| ReadError::Client { topic: topic.to_owned(), source })?;
    partitions(&consumer, topic, timeout)
}

#[cfg(test)]
mod end_tests {
    use super::*;

    #[test]
    fn the_end_of_the_partition_is_recognised_in_both_of_librdkafkas_forms() {
        assert!(is_end_of_partition(&KafkaError::PartitionEOF(0)));
        assert!(is_end_of_partition(&KafkaError::Global(RDKafkaErrorCode::PartitionEOF)));
        assert!(!is_end_of_partition(&KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure)));
    }
}
