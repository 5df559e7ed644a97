-- The rows that can hold back their tenant's later rows: leased (or a lease that
-- lapsed) or waiting for a retry. Few at any time, so the claim finds the first one of
-- a tenant by a probe, whatever the tenant's backlog.
CREATE INDEX outbox_held ON outbox (tenant_id, seq)
    WHERE published_at IS NULL AND failed_at IS NULL AND (claimed_until IS NOT NULL OR not_before > 0);
