-- Named operators with a role (only the SHA-256 of each token is kept), and the audit
-- log of what they did. The audit log is append-only: a trigger refuses every UPDATE
-- and DELETE of it.

CREATE TABLE operators (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    seq BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    operator TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    tenant_id TEXT,
    count BIGINT,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_by_operator ON audit_log (operator, seq);
CREATE INDEX audit_by_action ON audit_log (action, seq);
CREATE INDEX audit_by_tenant ON audit_log (tenant_id, seq);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
