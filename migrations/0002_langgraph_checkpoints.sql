-- LangGraph checkpoint tables, exactly as langgraph-checkpoint-postgres==3.2.0
-- AsyncPostgresSaver.setup() creates them (its MIGRATIONS list, versions 0-9),
-- plus the checkpoint_migrations rows that tell setup() nothing is left to do.
-- The statements follow MIGRATIONS in order; the only change is that the
-- indexes are built without CONCURRENTLY, which cannot run inside the
-- transaction the runner wraps each file in. IF NOT EXISTS / ON CONFLICT keep
-- this file harmless on a database where setup() already ran.
-- Upgrading the package: add a new file with its new MIGRATIONS entries and
-- rows; tests/integration/test_migrations.py fails until you do.

-- v0
CREATE TABLE IF NOT EXISTS checkpoint_migrations (
    v INTEGER PRIMARY KEY
);

-- v1
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT,
    checkpoint JSONB NOT NULL,
    metadata JSONB NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);

-- v2
CREATE TABLE IF NOT EXISTS checkpoint_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    blob BYTEA,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);

-- v3
CREATE TABLE IF NOT EXISTS checkpoint_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL DEFAULT '',
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    channel TEXT NOT NULL,
    type TEXT,
    blob BYTEA NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);

-- v4
ALTER TABLE checkpoint_blobs ALTER COLUMN blob DROP NOT NULL;

-- v5 is a no-op in the package ("SELECT 1;")

-- v6, v7, v8
CREATE INDEX IF NOT EXISTS checkpoints_thread_id_idx ON checkpoints(thread_id);
CREATE INDEX IF NOT EXISTS checkpoint_blobs_thread_id_idx ON checkpoint_blobs(thread_id);
CREATE INDEX IF NOT EXISTS checkpoint_writes_thread_id_idx ON checkpoint_writes(thread_id);

-- v9
ALTER TABLE checkpoint_writes ADD COLUMN IF NOT EXISTS task_path TEXT NOT NULL DEFAULT '';

INSERT INTO checkpoint_migrations (v)
SELECT v FROM generate_series(0, 9) AS v
ON CONFLICT (v) DO NOTHING;
