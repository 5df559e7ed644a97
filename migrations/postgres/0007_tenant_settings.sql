-- Per-tenant settings: the plan (rate limits come from the configuration per plan) and
-- the tenant's own alert webhook.

ALTER TABLE tenants ADD COLUMN plan TEXT NOT NULL DEFAULT 'standard';
ALTER TABLE tenants ADD COLUMN alert_webhook_url TEXT;
