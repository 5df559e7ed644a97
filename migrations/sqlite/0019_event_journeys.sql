-- An event's journey is read from the records the pipeline keeps anyway, by event id:
-- these indexes make each of those reads a probe.
CREATE INDEX inbox_by_event ON inbox (event_id);
CREATE INDEX parked_by_event ON parked_dead_letters (event_id);
CREATE INDEX feedback_by_event ON feedback (tenant_id, event_id);
CREATE INDEX emails_by_event ON emails (tenant_id, event_id);
CREATE INDEX invitations_by_event ON testflight_invitations (tenant_id, event_id);
CREATE INDEX idempotency_by_event ON idempotency_keys (tenant_id, event_id);
