-- Emails: one row per recipient; the content travels in the event.

CREATE TABLE emails (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    campaign_id TEXT,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    status TEXT NOT NULL,
    provider TEXT,
    provider_message_id TEXT,
    failure_reason TEXT,
    result_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX emails_campaign ON emails (tenant_id, campaign_id) WHERE campaign_id IS NOT NULL;
