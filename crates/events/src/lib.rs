//! Fanout's domain event contracts, and nothing else: adding an event type touches `schemas/` and
//! this crate.
//!
//! The Avro files in `schemas/` are the source of truth; the types here mirror them and a test
//! fails when the two drift apart. Payloads carry domain data only: the event's id, source, time
//! and trace context travel in CloudEvents Kafka headers, named in [`fanout_core::headers`]. The
//! [`Event`] trait they implement is the platform's, re-exported here so a contract and its trait
//! come from one `use`.
//!
//! ```
//! use fanout_events::{Category, Event, PostPublished};
//!
//! let event = PostPublished {
//!     post_id: 42,
//!     user_id: 7,
//!     category: Category::Job,
//!     city: "Berlin".into(),
//!     title: "Barista wanted".into(),
//!     published_at: 1_764_000_000_000,
//! };
//! assert_eq!(PostPublished::TOPIC, "post.published");
//! assert_eq!(event.key(), b"42");
//! ```

#![warn(missing_docs)]

use std::sync::OnceLock;

use apache_avro::Schema;
use serde::{Deserialize, Serialize};

pub mod topics;

pub use fanout_core::{Event, EventVisitor};

/// Declares the domain's event types once: [`TYPES`] and [`visit`] both come from this list, so
/// adding an event type (its schema file, its Rust type) and naming it here is all a new event
/// takes; tools such as the `fanout` command find it through them.
macro_rules! event_types {
    ($($event:ty),+ $(,)?) => {
        /// The CloudEvents type of every event of the domain.
        pub const TYPES: &[&str] = &[$(<$event as Event>::TYPE),+];

        /// Calls `visitor` with the event type whose CloudEvents type is `event_type`; `None` when
        /// the domain has no such type (see [`TYPES`]).
        pub fn visit<V: EventVisitor>(event_type: &str, visitor: V) -> Option<V::Output> {
            $(
                if event_type == <$event as Event>::TYPE {
                    return Some(visitor.visit::<$event>());
                }
            )+
            None
        }
    };
}

event_types!(PostPublished);

/// Appends `n` in decimal to `out`, as `n.to_string()` would, without allocating.
fn write_decimal(n: i64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[start..]);
}

/// The business a post belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    /// The jobs business (credits beans to the author).
    Job,
    /// The housing business (grants top-placement credits).
    Housing,
    /// The second-hand business (keeps user statistics).
    Secondhand,
    /// Anything else, and any symbol a newer writer added that this reader does not know.
    Other,
}

impl Category {
    /// Every category, in schema order.
    pub const ALL: [Category; 4] = [Self::Job, Self::Housing, Self::Secondhand, Self::Other];

    /// The Avro symbol, e.g. `JOB`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Job => "JOB",
            Self::Housing => "HOUSING",
            Self::Secondhand => "SECONDHAND",
            Self::Other => "OTHER",
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user published a post (`schemas/post_published.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostPublished {
    /// The post's id; the Kafka key.
    pub post_id: i64,
    /// The author.
    pub user_id: i64,
    /// The business the post belongs to.
    pub category: Category,
    /// The city the post is about.
    pub city: String,
    /// The post's title.
    pub title: String,
    /// When the author published, milliseconds since the Unix epoch (Avro `timestamp-millis`).
    pub published_at: i64,
}

impl Event for PostPublished {
    const TYPE: &'static str = "post.published";
    const TOPIC: &'static str = topics::POST_PUBLISHED;
    const SCHEMA: &'static str = include_str!("../../../schemas/post_published.avsc");

    fn schema() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| {
            // The text is compiled in and parsed by a unit test, so this cannot fail at run time.
            Schema::parse_str(Self::SCHEMA).expect("schemas/post_published.avsc is valid Avro")
        })
    }

    fn key(&self) -> Vec<u8> {
        self.post_id.to_string().into_bytes()
    }

    fn write_key(&self, out: &mut Vec<u8>) {
        write_decimal(self.post_id, out);
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::{schema::RecordSchema, types::Value, Schema};

    use super::*;

    fn sample() -> PostPublished {
        PostPublished {
            post_id: 1,
            user_id: 2,
            category: Category::Secondhand,
            city: "Lyon".into(),
            title: "Bike".into(),
            published_at: 1_700_000_000_000,
        }
    }

    /// The Rust type and the `.avsc` file name the same fields in the same order, and a value of
    /// the Rust type is valid against the file's schema; a rename, addition or type change on
    /// either side fails here.
    #[test]
    fn rust_type_matches_the_schema_file() {
        let schema = PostPublished::schema();
        let Schema::Record(RecordSchema { fields, .. }) = schema else {
            panic!("PostPublished.avsc is not a record");
        };
        let value = apache_avro::to_value(sample()).expect("serialises");
        let Value::Record(rust_fields) = &value else {
            panic!("PostPublished does not serialise to a record");
        };
        let file_names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        let rust_names: Vec<&str> = rust_fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(file_names, rust_names);
        assert!(value.resolve(schema).is_ok(), "a PostPublished value does not fit the file's schema");
    }

    #[test]
    fn every_category_is_a_symbol_of_the_schema_enum() {
        let Schema::Record(RecordSchema { fields, .. }) = PostPublished::schema() else {
            panic!("not a record");
        };
        let category = fields.iter().find(|f| f.name == "category").expect("category field");
        let Schema::Enum(e) = &category.schema else {
            panic!("category is not an enum");
        };
        let rust: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(e.symbols, rust);
        for c in Category::ALL {
            let json = serde_json::to_string(&c).expect("serialises");
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
    }

    #[test]
    fn every_listed_type_is_found_by_name_and_no_other() {
        struct Topic;
        impl EventVisitor for Topic {
            type Output = &'static str;
            fn visit<E: Event>(self) -> &'static str {
                E::TOPIC
            }
        }
        assert_eq!(TYPES, [PostPublished::TYPE]);
        for name in TYPES {
            assert!(visit(name, Topic).is_some(), "{name}");
        }
        assert_eq!(visit(PostPublished::TYPE, Topic), Some(topics::POST_PUBLISHED));
        assert_eq!(visit("post.deleted", Topic), None);
    }

    #[test]
    fn write_key_writes_what_key_returns() {
        for post_id in [0, 7, 42, -1, 1_000_000_042, i64::MAX, i64::MIN] {
            let event = PostPublished { post_id, ..sample() };
            let mut out = b"prefix".to_vec();
            event.write_key(&mut out);
            assert_eq!(&out[6..], event.key(), "{post_id}");
            assert_eq!(event.key(), post_id.to_string().into_bytes());
        }
    }

    #[test]
    fn avro_round_trip() {
        let schema = PostPublished::schema();
        let bytes = apache_avro::to_avro_datum(schema, apache_avro::to_value(sample()).expect("value"))
            .expect("encodes");
        let value = apache_avro::from_avro_datum(schema, &mut bytes.as_slice(), None).expect("decodes");
        let back: PostPublished = apache_avro::from_value(&value).expect("typed");
        assert_eq!(back, sample());
    }
}
