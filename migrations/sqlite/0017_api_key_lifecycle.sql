-- API keys that expire, when each was last used (recorded at most once a minute per
-- key and API process), and revocations that API processes find by time to drop the
-- keys from their caches within seconds.
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
CREATE INDEX api_keys_revoked ON api_keys (revoked_at) WHERE revoked_at IS NOT NULL;
