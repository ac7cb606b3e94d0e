-- Requests whose callbacks go to their requester's own topic rather than the source's: registered
-- by the requester before it calls the provider, kept until expires_at_ms, then swept.

CREATE TABLE IF NOT EXISTS fanout_gateway_routes (
    source TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    reply_topic TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (source, correlation_id)
);

CREATE INDEX IF NOT EXISTS fanout_gateway_routes_expiry ON fanout_gateway_routes (expires_at_ms);
