-- Access requests imported from the backend Switchyard replaces keep the old backend's
-- id of the requesting user.
ALTER TABLE access_requests ADD COLUMN requester_id TEXT;
