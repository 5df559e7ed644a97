-- TestFlight invitations: one row per invited tester; the outcome is recorded with the
-- worker's inbox row.

CREATE TABLE testflight_invitations (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    email TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    group_id TEXT NOT NULL,
    status TEXT NOT NULL,
    tester_id TEXT,
    already_existed INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT,
    result_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
