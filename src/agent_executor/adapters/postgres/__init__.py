"""PostgreSQL adapters: the job ledger (asyncpg), LangGraph checkpoints (psycopg),
the readiness probe and retention."""
