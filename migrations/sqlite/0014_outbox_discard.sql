-- Failed outbox rows for operators: listed newest first (by tenant too), retried, or
-- discarded with a reason. A discarded row is kept, never published, and no longer
-- counted as failed.
ALTER TABLE outbox ADD COLUMN discarded_at INTEGER;
ALTER TABLE outbox ADD COLUMN discard_reason TEXT;
CREATE INDEX outbox_failed ON outbox (seq)
    WHERE failed_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL;
CREATE INDEX outbox_failed_tenant ON outbox (tenant_id, seq)
    WHERE failed_at IS NOT NULL AND published_at IS NULL AND discarded_at IS NULL;
