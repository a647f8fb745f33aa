-- The job ledger: one row per job (CONTRACT section 2). Every job runs once and
-- ends with one result; a lease (owner + expiry, renewed while the job runs)
-- keeps two workers from running it at the same time. Times come from the
-- database clock (now()), so replicas with skewed clocks agree on expiry.
-- The runner sets search_path to POSTGRES_SCHEMA; nothing here names a schema.

CREATE TABLE job_ledger (
    job_id           text        PRIMARY KEY,
    trace_id         text        NOT NULL,
    source           text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- the JobExecutionEvent as it arrived, so an orphaned job can be resumed
    job              jsonb       NOT NULL,
    lease_owner      text,
    lease_expires_at timestamptz,
    -- the result CloudEvent's data plus finished_at (JobResult.to_record()),
    -- holding either "result" or "error"
    result           jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_ledger_finished_has_result
        CHECK ((status IN ('completed', 'failed')) = (finished_at IS NOT NULL AND result IS NOT NULL)),
    CONSTRAINT job_ledger_lease_whole
        CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);

-- the orphan reaper: unfinished jobs by lease expiry
CREATE INDEX job_ledger_unfinished_lease_idx
    ON job_ledger (lease_expires_at NULLS FIRST)
    WHERE finished_at IS NULL;

-- retention (agent-executor prune): finished jobs by finish time
CREATE INDEX job_ledger_finished_at_idx
    ON job_ledger (finished_at)
    WHERE finished_at IS NOT NULL;
