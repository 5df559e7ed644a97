-- Access requests: the sequence is the ticket number (R00001, …) of the deployment.

CREATE TABLE access_requests (
    seq BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    requester TEXT NOT NULL,
    organization TEXT NOT NULL,
    message TEXT,
    status TEXT NOT NULL,
    decision_reason TEXT,
    created_tenant_id TEXT,
    reminded_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX access_requests_one_pending ON access_requests (tenant_id, requester) WHERE status = 'pending';
CREATE INDEX access_requests_status ON access_requests (status, created_at);
