-- Dead letters parked in the store: each dead-letter queue is drained into this table
-- as messages arrive, so operators browse, group, redrive and purge copies here
-- (on SQS, looking at a message means receiving it). One row per message the
-- dead-letter queue held, once: parking is idempotent by (queue, message id).

CREATE TABLE parked_dead_letters (
    seq BIGSERIAL PRIMARY KEY,
    -- The queue the message failed in, not its dead-letter queue.
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    body TEXT NOT NULL,
    -- A JSON object of the message's attributes.
    attributes TEXT NOT NULL,
    -- From the envelope in the body; NULL when it cannot be read.
    tenant_id TEXT,
    event_id TEXT,
    event_type TEXT,
    error TEXT NOT NULL,
    error_pattern TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    -- A JSON array of {"at", "error"}, oldest first.
    attempts TEXT NOT NULL,
    dead_lettered_at BIGINT NOT NULL,
    parked_at BIGINT NOT NULL,
    -- parked: waiting for an operator.
    state TEXT NOT NULL,
    UNIQUE (queue, message_id)
);

-- Newest first, by whatever an operator narrows the list to: each filter leads an
-- index that ends in seq, so a page is a probe and a short walk whatever the total.
CREATE INDEX parked_newest ON parked_dead_letters (state, seq);
CREATE INDEX parked_by_queue ON parked_dead_letters (state, queue, seq);
CREATE INDEX parked_by_tenant ON parked_dead_letters (state, tenant_id, seq);
CREATE INDEX parked_by_type ON parked_dead_letters (state, event_type, seq);
CREATE INDEX parked_by_group ON parked_dead_letters (state, fingerprint, seq);
