-- Tenants, API keys, feedback, the outbox and the inbox.
-- Ids are prefixed text ids; times are milliseconds since the Unix epoch.

CREATE TABLE tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

CREATE TABLE idempotency_keys (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    idempotency_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, idempotency_key)
);

CREATE TABLE feedback (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    rating BIGINT,
    message TEXT NOT NULL,
    contact_email TEXT,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    result_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    envelope TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    not_before BIGINT NOT NULL DEFAULT 0,
    claimed_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    published_at BIGINT,
    -- Set when the relay gave up on the row: kept for operators, no longer claimed.
    failed_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL AND failed_at IS NULL;
CREATE INDEX outbox_pending_tenant ON outbox (tenant_id, seq) WHERE published_at IS NULL AND failed_at IS NULL;

CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    processed_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
