"""`python -m bench.job_list`: how long one `GET /jobs` page takes at 1,000,000 jobs.

Creates a throwaway database on the test server (127.0.0.1:15433 unless told
otherwise), applies migrations/ with scripts/ci/run-migrations.sh, inserts the
rows with generate_series (30 days of jobs; most completed, a few failed, rare
pending and running ones; mostly NATS), then times pages through the real
`PostgresJobLedger.list_jobs` at cursors spread over the whole range (each page
a keyset page, so depth does not matter), with and without filters, and once
more without the indexes of migrations/0004 for comparison. Prints a table and
drops the database. Results: docs/performance.md ("The job list").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from agent_executor.adapters.config import PostgresSettings
from agent_executor.adapters.postgres.ledger import PostgresJobLedger
from agent_executor.domain.listing import JobQuery, encode_cursor

ROOT = Path(__file__).resolve().parents[1]
SPAN = timedelta(days=30)
SCENARIOS: tuple[tuple[str, frozenset[str], frozenset[str]], ...] = (
    ("no filter", frozenset(), frozenset()),
    ("status=completed (94%)", frozenset({"completed"}), frozenset()),
    ("status=failed (5%)", frozenset({"failed"}), frozenset()),
    ("status=running (0.5%)", frozenset({"running"}), frozenset()),
    ("status=pending,running", frozenset({"pending", "running"}), frozenset()),
    ("source=http (28%)", frozenset(), frozenset({"http"})),
    ("status=failed&source=nats", frozenset({"failed"}), frozenset({"nats"})),
)
INSERT = """
INSERT INTO job_ledger (job_id, trace_id, source, status, attempts, job, result,
                        created_at, started_at, finished_at, updated_at, published_at)
SELECT 'job-' || i, md5(i::text),
       CASE WHEN i % 50 = 0 THEN 'cli' WHEN i % 100 < 28 THEN 'http' ELSE 'nats' END,
       s.status, 1,
       jsonb_build_object('job_id', 'job-' || i, 'trace_id', md5(i::text),
                          'agent_definition', jsonb_build_object('name', 'bench'),
                          'input_payload', jsonb_build_object('messages', jsonb_build_array(
                              jsonb_build_object('role', 'user', 'content', 'Write the spec')))),
       CASE WHEN s.status IN ('completed', 'failed') THEN jsonb_build_object(
           'job_id', 'job-' || i, 'trace_id', md5(i::text), 'status', s.status,
           'attempts', 1, 'duration_ms', 1234, 'finished_at', t.at + interval '2 s',
           'result', jsonb_build_object('output', 'done', 'files',
               jsonb_build_object('/spec.md', repeat('x', 400)),
               'messages', jsonb_build_array(jsonb_build_object('role', 'ai',
                                                               'content', 'done'))))
       END,
       t.at, t.at,
       CASE WHEN s.status IN ('completed', 'failed') THEN t.at + interval '2 s' END,
       t.at + interval '2 s',
       CASE WHEN s.status IN ('completed', 'failed') THEN t.at + interval '2 s' END
  FROM generate_series(1, $1::int) AS i,
       LATERAL (SELECT $2::timestamptz + (i * $3::float8) * interval '1 s' AS at) AS t,
       LATERAL (SELECT CASE WHEN i % 1000 < 5 THEN 'running'
                            WHEN i % 1000 < 10 THEN 'pending'
                            WHEN i % 1000 < 60 THEN 'failed'
                            ELSE 'completed' END AS status) AS s
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.job_list", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=200, help="timed pages per scenario")
    parser.add_argument("--limit", type=int, default=50, help="jobs per page")
    parser.add_argument("--host", default=os.environ.get("TEST_POSTGRES_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int,
                        default=int(os.environ.get("TEST_POSTGRES_PORT", "15433")))
    parser.add_argument("--user", default="postgres")
    parser.add_argument("--explain", action="store_true",
                        help="also print each scenario's plan (EXPLAIN ANALYZE, one page)")
    return parser.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    database = f"bench_job_list_{os.getpid()}"
    admin = await asyncpg.connect(host=args.host, port=args.port, user=args.user,
                                  database="postgres")
    await admin.execute(f'CREATE DATABASE "{database}"')
    settings = PostgresSettings(args.host, args.port, database, args.user, "", "public")
    try:
        migrate(settings)
        conn = await asyncpg.connect(host=args.host, port=args.port, user=args.user,
                                     database=database)
        start = datetime.now(UTC) - SPAN
        began = time.perf_counter()
        await conn.execute(INSERT, args.rows, start, SPAN.total_seconds() / args.rows)
        await conn.execute("VACUUM ANALYZE job_ledger")
        print(f"inserted {args.rows:,} rows in {time.perf_counter() - began:.1f}s; "
              f"table {await size(conn, 'job_ledger')}, list indexes "
              f"{await size(conn, 'job_ledger_list_idx')} + "
              f"{await size(conn, 'job_ledger_list_status_idx')}")
        ledger = await PostgresJobLedger.create(settings, max_size=1)  # the service's pool
        print(f"\n{args.pages} pages of {args.limit} per scenario, at cursors spread over "
              "the whole range (ms):")
        print(f"{'scenario':32} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
        for name, statuses, sources in SCENARIOS:
            await report(ledger, name, statuses, sources, args, start)
        if args.explain:
            for name, statuses, sources in SCENARIOS:
                await explain(conn, name, JobQuery(statuses, sources, args.limit, encode_cursor(
                    (start + SPAN / 2).isoformat(), "")))
        await conn.execute("DROP INDEX job_ledger_list_idx, job_ledger_list_status_idx")
        print("\nwithout the indexes of migrations/0004 (a tenth of the pages):")
        for name, statuses, sources in (SCENARIOS[0], SCENARIOS[3]):
            await report(ledger, name, statuses, sources,
                         argparse.Namespace(pages=max(args.pages // 10, 5), limit=args.limit),
                         start)
        await ledger.aclose()
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await admin.close()
    return 0


async def report(ledger: PostgresJobLedger, name: str, statuses: frozenset[str],
                 sources: frozenset[str], args: argparse.Namespace, start: datetime) -> None:
    rng = random.Random(17)
    timings: list[float] = []
    for n in range(args.pages + 5):  # the first five warm the plan cache, not timed
        at = start + SPAN * rng.random()
        cursor = None if n % 20 == 0 else encode_cursor(at.isoformat(), "")
        began = time.perf_counter()
        page = await ledger.list_jobs(JobQuery(statuses, sources, args.limit, cursor))
        elapsed = (time.perf_counter() - began) * 1000
        assert page.records, f"{name}: an empty page"
        if n >= 5:
            timings.append(elapsed)
    timings.sort()
    q = statistics.quantiles(timings, n=100, method="inclusive")
    print(f"{name:32} {q[49]:7.2f} {q[94]:7.2f} {q[98]:7.2f} {timings[-1]:7.2f}")


async def explain(conn: asyncpg.Connection, name: str, query: JobQuery) -> None:
    from agent_executor.adapters.postgres.job_list import page_sql
    from agent_executor.adapters.postgres.ledger import _COLUMNS
    sql, values = page_sql("job_ledger", _COLUMNS, query)
    plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *values)
    print(f"\n-- {name}")
    print("\n".join(row[0] for row in plan))


async def size(conn: asyncpg.Connection, relation: str) -> str:
    return str(await conn.fetchval("SELECT pg_size_pretty(pg_relation_size($1))", relation))


def migrate(settings: PostgresSettings) -> None:
    env = {**os.environ, "POSTGRES_HOST": settings.host, "POSTGRES_PORT": str(settings.port),
           "POSTGRES_DB": settings.database, "POSTGRES_USER": settings.user,
           "POSTGRES_SCHEMA": settings.schema}
    subprocess.run(["bash", str(ROOT / "scripts/ci/run-migrations.sh")], env=env, check=True,
                   capture_output=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
