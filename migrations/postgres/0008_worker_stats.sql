-- Workers' running counts, reported by every worker process, so a monitor in another
-- process can alert on failure rates. Counts restart with the process.

CREATE TABLE worker_stats (
    worker TEXT NOT NULL,
    process TEXT NOT NULL,
    handled BIGINT NOT NULL,
    failed BIGINT NOT NULL,
    reported_at BIGINT NOT NULL,
    PRIMARY KEY (worker, process)
);
