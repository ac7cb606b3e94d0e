//! Which handler a fetched record goes to: each handler is bound to its main topic and to the
//! consumer's own retry topic of it, and its dead letters go to the consumer's dead-letter topic.

use std::sync::Arc;

use fanout_core::topics;

use crate::{handler::Route, ConsumerError, FastMap};

/// One handler bound to its topics.
pub(crate) struct Binding {
    pub(crate) route: Arc<dyn Route>,
    /// The topic events are published to.
    pub(crate) topic: String,
    /// `<topic>.<consumer>.retry`.
    pub(crate) retry_topic: String,
    /// `<topic>.<consumer>.dlq`.
    pub(crate) dlq_topic: String,
}

/// The routing table: by the topic a record is fetched from, its binding and whether that topic
/// is the binding's retry topic. Built once; looked up per record.
#[derive(Default)]
pub(crate) struct Routes {
    by_topic: FastMap<String, (Arc<Binding>, bool)>,
    /// The main topics, in the order the handlers were added.
    main: Vec<Arc<Binding>>,
}

impl Routes {
    /// Binds `route` to `topic` and to `consumer`'s retry topic of it; a second handler for the
    /// same topic is a wiring error.
    pub(crate) fn bind(
        &mut self,
        consumer: &str,
        topic: String,
        route: Arc<dyn Route>,
    ) -> Result<(), ConsumerError> {
        if self.by_topic.contains_key(&topic) {
            return Err(ConsumerError::Wiring(format!("two handlers for topic {topic}")));
        }
        let binding = Arc::new(Binding {
            route,
            retry_topic: topics::retry(&topic, consumer),
            dlq_topic: topics::dead_letter(&topic, consumer),
            topic: topic.clone(),
        });
        self.by_topic.insert(binding.retry_topic.clone(), (binding.clone(), true));
        self.by_topic.insert(topic, (binding.clone(), false));
        self.main.push(binding);
        Ok(())
    }

    /// The binding of a record fetched from `topic`, and whether `topic` is its retry topic.
    pub(crate) fn get(&self, topic: &str) -> Option<&(Arc<Binding>, bool)> {
        self.by_topic.get(topic)
    }

    /// True when `topic` is one of the consumer's retry topics.
    pub(crate) fn is_retry_topic(&self, topic: &str) -> bool {
        self.by_topic.get(topic).is_some_and(|(_, retry)| *retry)
    }

    /// Every binding, once, in the order the handlers were added.
    pub(crate) fn bindings(&self) -> &[Arc<Binding>] {
        &self.main
    }
}
