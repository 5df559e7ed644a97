-- Operators' plans over parked dead letters and the jobs that carry them out. A plan
-- freezes its selection as rows of operator_plan_items, so confirming it acts on
-- what it matched when it was made and on nothing that arrived since.

-- Purged dead letters are kept (state 'purged') until the retention runs out;
-- redriven ones name the job that sent them back.
ALTER TABLE parked_dead_letters ADD COLUMN purged_at BIGINT;
ALTER TABLE parked_dead_letters ADD COLUMN redriven_by TEXT;
CREATE INDEX parked_purged ON parked_dead_letters (state, purged_at);

CREATE TABLE operator_plans (
    id TEXT PRIMARY KEY,
    -- redrive, purge or restore.
    action TEXT NOT NULL,
    -- The selection as asked for (JSON): {"ids": [...]} or {"filter": {...}}.
    selection TEXT NOT NULL,
    -- The counts when it was made (JSON).
    counts TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    job_id TEXT
);
CREATE INDEX operator_plans_unconfirmed ON operator_plans (expires_at) WHERE confirmed_at IS NULL;

CREATE TABLE operator_plan_items (
    plan_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (plan_id, seq)
);

CREATE TABLE operator_jobs (
    id TEXT PRIMARY KEY,
    plan_id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    -- running, cancelled, completed or failed.
    state TEXT NOT NULL,
    total BIGINT NOT NULL,
    done BIGINT NOT NULL,
    skipped BIGINT NOT NULL,
    -- The highest parked seq handled: a job taken over goes on after it.
    cursor_seq BIGINT NOT NULL,
    rate_per_minute BIGINT NOT NULL,
    error TEXT,
    -- Who works on it, until when: a job whose lease ran out is taken over.
    lease_owner TEXT,
    lease_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX operator_jobs_running ON operator_jobs (state, lease_until);
