-- Per-tenant secrets that inbound webhooks from one source are signed with.

CREATE TABLE webhook_secrets (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    source TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, source)
);
