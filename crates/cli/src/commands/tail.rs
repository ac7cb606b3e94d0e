//! `fanout tail TOPIC`: a topic's events decoded through the registry, as JSON lines.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use fanout_core::{Event, EventVisitor};
use fanout_schema_registry::AvroSerde;
use rdkafka::{
    consumer::{BaseConsumer, Consumer},
    message::{BorrowedMessage, Headers},
    Message, Offset, TopicPartitionList,
};
use serde_json::{json, Map, Value};

use super::connection::Connection;
use crate::events;

/// Print the events of a topic decoded through the registry, one JSON object per line, with key,
/// partition, offset and CloudEvents headers. Records that do not decode are printed with the
/// reason, never skipped.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// The topic.
    topic: String,
    /// Start at the oldest retained event instead of only new ones.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<usize>,
    /// Decode into this event type (e.g. `post.published`) instead of the writer's schema alone.
    #[arg(long = "as")]
    as_type: Option<String>,
    /// Give up (non-zero exit) when no record arrives for this many seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    #[command(flatten)]
    connection: Connection,
}

impl TailArgs {
    /// Runs until `--max` records were printed, the idle timeout, or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        if let Some(name) = &self.as_type {
            events::check(name)?;
        }
        let settings = self.connection.connect().await?;
        let serde = AvroSerde::from_settings(&settings.registry)?;
        let consumer: BaseConsumer = settings
            .client_config()
            .set("group.id", format!("fanout-tail-{}", uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .create()
            .context("cannot create the Kafka consumer")?;
        let metadata =
            consumer.fetch_metadata(Some(&self.topic), Duration::from_secs(10)).with_context(|| {
                format!("no metadata for topic {} from {}", self.topic, settings.kafka.bootstrap)
            })?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            bail!("topic {} does not exist", self.topic);
        }
        let start = if self.from_beginning { Offset::Beginning } else { Offset::End };
        let mut assignment = TopicPartitionList::new();
        for partition in partitions {
            assignment.add_partition_offset(&self.topic, partition, start)?;
        }
        consumer.assign(&assignment)?;

        let mut printed = 0usize;
        let mut last_record = Instant::now();
        let shutdown = fanout_service::shutdown_signal();
        tokio::pin!(shutdown);
        while self.max.is_none_or(|max| printed < max) {
            if futures::FutureExt::now_or_never(&mut shutdown).is_some() {
                break;
            }
            let polled = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)));
            let Some(message) = polled else {
                if last_record.elapsed() > Duration::from_secs(self.idle_timeout) {
                    bail!("no record for {}s after {printed} records", self.idle_timeout);
                }
                continue;
            };
            let message = message.with_context(|| format!("consuming {}", self.topic))?;
            last_record = Instant::now();
            println!("{}", self.render(&serde, &message).await);
            printed += 1;
        }
        Ok(())
    }

    async fn render(&self, serde: &AvroSerde, message: &BorrowedMessage<'_>) -> Value {
        let mut headers = Map::new();
        if let Some(hs) = message.headers() {
            for header in hs.iter() {
                let value = header.value.map(|v| String::from_utf8_lossy(v).into_owned());
                headers.insert(header.key.to_owned(), value.map(Value::String).unwrap_or(Value::Null));
            }
        }
        let mut line = json!({
            "topic": message.topic(),
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "timestamp_ms": message.timestamp().to_millis(),
            "headers": headers,
        });
        let payload = message.payload().unwrap_or_default();
        let typed =
            self.as_type.as_deref().and_then(|name| fanout_events::visit(name, DecodeAs { serde, payload }));
        let decoded = match typed {
            Some(decoding) => decoding.await,
            None => serde.decode_json(payload).await.map_err(anyhow::Error::from),
        };
        match decoded {
            Ok(value) => line["value"] = value,
            Err(error) => line["error"] = Value::String(fanout_core::report(error.as_ref())),
        }
        if let Some(id) = fanout_schema_registry::wire::schema_id(payload) {
            line["schema_id"] = json!(id);
        }
        line
    }
}

/// Decodes a payload into an event type chosen by name, then renders it as JSON.
struct DecodeAs<'a> {
    serde: &'a AvroSerde,
    payload: &'a [u8],
}

impl<'a> EventVisitor for DecodeAs<'a> {
    type Output = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Value>> + Send + 'a>>;

    fn visit<E: Event>(self) -> Self::Output {
        Box::pin(async move { Ok(serde_json::to_value(self.serde.decode::<E>(self.payload).await?)?) })
    }
}
