//! What the gateway publishes: the `CallbackReceived` contract (`schemas/gateway/`), and the
//! event id a callback is published under.

use std::sync::OnceLock;

use apache_avro::Schema;
use fanout_core::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A provider's callback, verified (and decrypted) by the gateway
/// (`schemas/gateway/callback_received.avsc`). Published to its source's topic, keyed by the
/// correlation id, so every callback answering one request is in order on one partition.
///
/// A requester consumes its source's topic (or the reply topic it registered) and keeps the
/// callbacks whose `correlation_id` it issued; [`body`](Self::body) is the provider's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackReceived {
    /// The gateway source it came through (`/callbacks/<source>`).
    pub source: String,
    /// The provider's id of the callback: what the gateway dedupes on.
    pub provider_event_id: String,
    /// Which request it answers: the id the requester issued.
    pub correlation_id: String,
    /// What happened, as the provider names it, where the source says where to find it.
    pub event_type: Option<String>,
    /// When the gateway received the request that was published, Unix ms.
    pub received_at: i64,
    /// The timestamp the provider signed, Unix ms, for schemes that sign one.
    pub signed_at: Option<i64>,
    /// The verified body; for WeChat Pay the decrypted resource.
    pub body: String,
}

impl Event for CallbackReceived {
    const TYPE: &'static str = "callback.received";
    /// The default topic; each source names its own, where its callbacks are published.
    const TOPIC: &'static str = "callback.received";
    const SCHEMA: &'static str = include_str!("../../../schemas/gateway/callback_received.avsc");

    fn schema() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            // Compiled in and parsed by a unit test, so this cannot fail at run time.
            Schema::parse_str(Self::SCHEMA).expect("schemas/gateway/callback_received.avsc is valid Avro")
        })
    }

    fn key(&self) -> Vec<u8> {
        self.correlation_id.as_bytes().to_vec()
    }

    fn write_key(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.correlation_id.as_bytes());
    }
}

/// A callback its requester expected by `expected_by` had not come
/// (`schemas/gateway/callback_timed_out.avsc`): scheduled by [`crate::Awaiter::expect`] through
/// the scheduler to the requester's reply topic, keyed by the correlation id like the callbacks,
/// so the partition's order says which came first. Delivered whether or not the requester runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallbackTimedOut {
    /// The gateway source the callback was expected through.
    pub source: String,
    /// The request's id.
    pub correlation_id: String,
    /// When the requester started waiting, Unix ms.
    pub requested_at: i64,
    /// When it stopped, Unix ms.
    pub expected_by: i64,
}

impl Event for CallbackTimedOut {
    const TYPE: &'static str = "callback.timed_out";
    /// The default topic; it is delivered to the requester's reply topic.
    const TOPIC: &'static str = "callback.timed_out";
    const SCHEMA: &'static str = include_str!("../../../schemas/gateway/callback_timed_out.avsc");

    fn schema() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            // Compiled in and parsed by a unit test, so this cannot fail at run time.
            Schema::parse_str(Self::SCHEMA).expect("schemas/gateway/callback_timed_out.avsc is valid Avro")
        })
    }

    fn key(&self) -> Vec<u8> {
        self.correlation_id.as_bytes().to_vec()
    }
}

/// The namespace of callbacks' event ids (a UUIDv4 made once for Fanout).
const NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d4e_8a3b_4c5d_9e7f_0a1b_2c3d_4e5f);

/// The `ce_id` a callback is published under: a UUIDv5 of its source and the provider's event
/// id. Every delivery of one callback, by any instance, after any restart, has the same id, so a
/// retry the gateway publishes again (its first attempt's acknowledgement lost) is applied once
/// by consumers that dedupe on `ce_id`, as every Fanout consumer does.
///
/// ```
/// let a = fanout_gateway::callback_event_id("wechatpay", "EV-2018022511223320873");
/// assert_eq!(a, fanout_gateway::callback_event_id("wechatpay", "EV-2018022511223320873"));
/// assert_ne!(a, fanout_gateway::callback_event_id("stripe", "EV-2018022511223320873"));
/// ```
pub fn callback_event_id(source: &str, provider_event_id: &str) -> Uuid {
    // The length first, so that no (source, id) pair can be spelled as another.
    let mut name = Vec::with_capacity(source.len() + provider_event_id.len() + 8);
    name.extend_from_slice(&(source.len() as u64).to_be_bytes());
    name.extend_from_slice(source.as_bytes());
    name.extend_from_slice(provider_event_id.as_bytes());
    Uuid::new_v5(&NAMESPACE, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_matches_its_schema_file_and_shares_the_callbacks_key() {
        let sample = CallbackTimedOut {
            source: "wechatpay".into(),
            correlation_id: "order-42".into(),
            requested_at: 1_764_000_000_000,
            expected_by: 1_764_000_900_000,
        };
        assert_eq!(sample.key(), b"order-42");
        fanout_testkit::assert_matches_its_schema(sample);
    }

    #[test]
    fn the_rust_type_matches_its_schema_file_and_is_keyed_by_correlation_id() {
        let sample = CallbackReceived {
            source: "wechatpay".into(),
            provider_event_id: "EV-1".into(),
            correlation_id: "order-42".into(),
            event_type: Some("TRANSACTION.SUCCESS".into()),
            received_at: 1_764_000_000_123,
            signed_at: Some(1_764_000_000_000),
            body: "{\"out_trade_no\":\"order-42\"}".into(),
        };
        assert_eq!(sample.key(), b"order-42");
        fanout_testkit::assert_matches_its_schema(sample);
    }

    #[test]
    fn event_ids_cannot_be_spelled_by_another_pair() {
        assert_ne!(callback_event_id("ab", "c"), callback_event_id("a", "bc"));
        assert_eq!(callback_event_id("a", "b").get_version_num(), 5);
    }
}
