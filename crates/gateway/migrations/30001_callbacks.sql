-- One row per callback the gateway published, by its source and the provider's event id: a
-- provider's retry finds it and is answered 200 without publishing. Rows older than the gateway's
-- dedupe_hours are deleted by its sweep, by published_at_ms.

CREATE TABLE IF NOT EXISTS fanout_gateway_callbacks (
    source TEXT NOT NULL,
    provider_event_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset BIGINT NOT NULL,
    published_at_ms BIGINT NOT NULL,
    PRIMARY KEY (source, provider_event_id)
);

CREATE INDEX IF NOT EXISTS fanout_gateway_callbacks_age ON fanout_gateway_callbacks (published_at_ms);
