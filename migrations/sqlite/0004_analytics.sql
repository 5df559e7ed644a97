-- Analytics: accepted batches, events staged by the worker until they are written, and
-- the objects written (for reconciliation: accepted vs written).

CREATE TABLE analytics_batches (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    event_count INTEGER NOT NULL,
    written_count INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE analytics_staged (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    batch_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    hour_start BIGINT NOT NULL,
    line TEXT NOT NULL,
    staged_at BIGINT NOT NULL,
    claimed_until BIGINT
);
CREATE INDEX analytics_staged_partition ON analytics_staged (tenant_id, hour_start, seq);

CREATE TABLE analytics_objects (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    object_key TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    written_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, object_key)
);
