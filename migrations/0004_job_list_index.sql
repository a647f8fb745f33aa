-- The job list (CONTRACT section 4, GET /jobs): keyset pages newest first by
-- (created_at, job_id), optionally filtered by status and source. job_id is
-- indexed in the "C" collation, the one the list's ORDER BY and cursor
-- comparison use, so ties order by code point as in every other ledger.
-- Measured at 1,000,000 rows: docs/performance.md ("The job list").

-- every page without a status filter (and with a source filter, which keeps
-- about a third of the rows: read along this index, filtered)
CREATE INDEX job_ledger_list_idx
    ON job_ledger (created_at, job_id COLLATE "C");

-- pages of one or a few statuses, however rare (running, pending): without it
-- a page of a rare status reads the whole list index to find its rows
CREATE INDEX job_ledger_list_status_idx
    ON job_ledger (status, created_at, job_id COLLATE "C");
