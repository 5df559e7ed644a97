-- How long the messages a worker process received since its previous report had
-- waited in their queue, at most: SQS reports the age of a queue's oldest message
-- only to CloudWatch, so the control plane's queue statistics derive it from this.
ALTER TABLE worker_stats ADD COLUMN longest_wait_ms INTEGER;
