"""The SQL of `GET /jobs` on PostgreSQL: keyset pages newest first.

One statement per filter shape (not `$1 IS NULL OR ...`, which a generic plan
cannot turn into an index range). job_id compares in the "C" collation, so ties
order by code point in every ledger and the indexes of migrations/0004 serve
both the order and the cursor's row comparison. A status filter is one ordered,
limited branch per status (`status = ANY(...)` would make PostgreSQL read every
row of those statuses and sort them), merged by the outer ORDER BY.
"""

from __future__ import annotations

from typing import Any

from agent_executor.domain.listing import JobQuery, time_cursor

ORDER = 'created_at DESC, job_id COLLATE "C" DESC'
# The list shows no result bodies: the agent's output (messages, files) stays behind.
SLIM_RESULT = "result - 'result' AS result"


def list_columns(columns: str) -> str:
    """The ledger's record columns with `result` slimmed."""
    return ", ".join(SLIM_RESULT if c.strip() == "result" else c.strip()
                     for c in columns.split(","))


def page_sql(table: str, columns: str, query: JobQuery) -> tuple[str, list[Any]]:
    """The statement and its arguments for one page (one row more than the limit,
    to know whether another page follows)."""
    args: list[Any] = [query.limit + 1]
    where: list[str] = []
    if query.sources:
        args.append(sorted(query.sources))
        where.append(f"source = ANY(${len(args)}::text[])")
    if query.cursor is not None:
        args.extend(time_cursor(query.cursor))
        where.append(f'(created_at, job_id COLLATE "C") < (${len(args) - 1}, ${len(args)})')
    select = f"SELECT {list_columns(columns)} FROM {table}"
    if not query.statuses:
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        return f"{select}{condition} ORDER BY {ORDER} LIMIT $1", args
    branches = []
    for status in sorted(query.statuses):
        args.append(status)
        condition = " AND ".join([f"status = ${len(args)}", *where])
        branches.append(f"({select} WHERE {condition} ORDER BY {ORDER} LIMIT $1)")
    return (f"SELECT * FROM ({' UNION ALL '.join(branches)}) AS page "
            f"ORDER BY {ORDER} LIMIT $1"), args
