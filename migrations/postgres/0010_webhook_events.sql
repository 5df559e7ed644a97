-- Inbound webhooks the webhooks worker recorded, once each (the inbox sees to that):
-- what a tenant lists at GET /v1/webhooks/events. The payload is in the result object.

CREATE TABLE webhook_events (
    seq BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    source TEXT NOT NULL,
    message_id TEXT NOT NULL,
    result_key TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (tenant_id, event_id)
);

CREATE INDEX webhook_events_by_tenant ON webhook_events (tenant_id, seq);
