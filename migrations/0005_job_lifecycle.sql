-- The job's lifecycle (CONTRACT sections 2 and 2a): fingerprints, runs, cancelling.
-- fingerprint: SHA-256 of the canonical JSON of agent_definition and input_payload;
--   a delivery with a known job_id and another fingerprint is refused (NULL: a job
--   recorded before this migration, which every delivery matches).
-- run: 1, then 2, 3, ... for each retry of a failed or cancelled job.
-- cancel_requested_at / cancel_reason: a cancel asked for while the job runs; the
--   worker holding the lease stops it and records the `cancelled` result.

ALTER TABLE job_ledger ADD COLUMN fingerprint text;
ALTER TABLE job_ledger ADD COLUMN run integer NOT NULL DEFAULT 1 CHECK (run >= 1);
ALTER TABLE job_ledger ADD COLUMN cancel_requested_at timestamptz;
ALTER TABLE job_ledger ADD COLUMN cancel_reason text;

ALTER TABLE job_ledger DROP CONSTRAINT job_ledger_status_check;
ALTER TABLE job_ledger ADD CONSTRAINT job_ledger_status_check
    CHECK (status IN ('pending', 'running', 'interrupted', 'completed', 'failed', 'cancelled'));
ALTER TABLE job_ledger DROP CONSTRAINT job_ledger_finished_has_result;
ALTER TABLE job_ledger ADD CONSTRAINT job_ledger_finished_has_result
    CHECK ((status IN ('completed', 'failed', 'cancelled'))
           = (finished_at IS NOT NULL AND result IS NOT NULL));
