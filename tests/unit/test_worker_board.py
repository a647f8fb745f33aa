"""The supervisor's board as `/ready` reads it: each row's state to one reason."""

from __future__ import annotations

import multiprocessing
import time

from agent_executor.adapters.workers.board import (
    STALE_SECONDS,
    WorkerBoard,
    WorkersReadinessProbe,
)


def board(count: int = 2) -> WorkerBoard:
    return WorkerBoard(count, multiprocessing.get_context("spawn"))


def test_a_row_is_ready_only_serving_with_fresh_passing_checks() -> None:
    rows = board()
    assert rows.not_ready(1) == "worker 2 exited: restarting"  # nothing started yet
    rows.starting(1, 4242)
    assert rows.not_ready(1) == "worker 2 (pid 4242) is starting"
    rows.serving(1, 4242)
    assert rows.not_ready(1) == "worker 2 (pid 4242) has not checked its dependencies yet"
    rows.checked(1, ["nats", "dragonfly"])
    assert rows.not_ready(1) == "worker 2 (pid 4242): dragonfly, nats not ready"
    rows.checked(1, [])
    assert rows.not_ready(1) is None
    later = time.monotonic() + STALE_SECONDS + 5
    reason = rows.not_ready(1, now=later)
    assert reason is not None and reason.startswith("worker 2 (pid 4242) has not refreshed")
    rows.stopping(1)
    assert rows.not_ready(1) == "worker 2 (pid 4242) is stopping"
    rows.down(1)
    assert rows.not_ready(1) == "worker 2 (pid 4242) exited: restarting"
    rows.starting(1, 4343)  # the restart forgets the old checks
    rows.serving(1, 4343)
    assert rows.not_ready(1) == "worker 2 (pid 4343) has not checked its dependencies yet"


def test_a_check_of_another_name_counts_as_failing() -> None:
    rows = board(1)
    rows.serving(0, 7)
    rows.checked(0, ["schema-cache"])
    assert rows.not_ready(0) == "worker 1 (pid 7): other not ready"


async def test_the_workers_check_names_every_other_worker_not_ready() -> None:
    rows = board(3)
    for index, pid in enumerate((11, 12, 13)):
        rows.serving(index, pid)
        rows.checked(index, [])
    probe = WorkersReadinessProbe(rows, 0)
    result = await probe.check()
    assert (result.ok, result.detail) == (True, "all 3 workers ready (this is worker 1)")
    rows.down(2)
    rows.checked(1, ["postgres"])
    result = await probe.check()
    assert not result.ok
    assert result.detail == ("worker 2 (pid 12): postgres not ready; "
                             "worker 3 (pid 13) exited: restarting")
    # a worker's own row is not its check: its own dependencies are the other checks
    rows.down(0)
    assert (await WorkersReadinessProbe(rows, 0).check()).detail == result.detail


def test_handed_back_jobs_add_up_over_the_rows() -> None:
    rows = board(3)
    rows.handed_back(0, 2)
    rows.handed_back(2, 1)
    assert rows.handed_back_total() == 3
    rows.starting(2, 99)  # a new worker in the row starts from none
    assert rows.handed_back_total() == 2
