-- The result outbox (CONTRACT section 5): a finished job's result is published
-- from the ledger. published_at is set once the result event is on the bus and
-- the job's stream holds its `end`; a live replica publishes what is recorded
-- but not yet published (the process that recorded it died before publishing).

ALTER TABLE job_ledger ADD COLUMN published_at timestamptz;

-- jobs finished before this migration were published by the process that ran them
UPDATE job_ledger SET published_at = finished_at WHERE finished_at IS NOT NULL;

CREATE INDEX job_ledger_unpublished_idx
    ON job_ledger (finished_at)
    WHERE finished_at IS NOT NULL AND published_at IS NULL;
