-- Messages a worker gave up on (its last attempt failed, so the transport moves it to
-- the dead-letter queue), recorded by the worker so the monitor can tell the tenant,
-- however many older messages the dead-letter queue still holds.

CREATE TABLE dead_letters (
    seq BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    error TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
