"""`python -m bench.peers`' own logic: the Aegra graph, the environment's stamp and
constraints, the process tree, the statistics and tables. (Aegra itself is not
installed here: the bench makes its own environment.)"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench.aegra import (
    STAMP,
    lock_constraints,
    project_dependencies,
    stamp,
    stamp_matches,
    version_mismatches,
)
from bench.aegra_graph import SHAPE, graph
from bench.cli import concurrencies
from bench.jobs import NoModelKeys, final_answer, shape_template
from bench.peer_report import (
    AEGRA_STREAM,
    AEGRA_WAIT,
    OURS,
    PeerRun,
    medians,
    ratio_table,
    ratios,
    runs_table,
)
from bench.servers import descendants, sample_tree
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph.compiler import AgentCompiler
from agent_executor.adapters.langgraph.definition import parse_definition
from agent_executor.adapters.langgraph.models import ChatModelFactory
from agent_executor.adapters.langgraph.tools import ToolRegistry


async def test_the_aegra_graph_is_the_floors_and_runs_the_script_on_an_attached_saver(
) -> None:
    served = await graph()
    assert served.checkpointer is None  # Aegra attaches its own to a copy
    registry = ToolRegistry.load()
    template = shape_template(SHAPE)
    floor = (await AgentCompiler(InMemorySaver(), ChatModelFactory(NoModelKeys()), registry)
             .acompile(parse_definition(template["agent_definition"], registry.names()))).graph
    assert set(served.get_graph().nodes) == set(floor.get_graph().nodes)

    copy = served.copy(update={"checkpointer": InMemorySaver()})  # as Aegra does
    state = await copy.ainvoke({"messages": template["input_payload"]["messages"]},
                               {"configurable": {"thread_id": "peers-1"}})
    assert state["messages"][-1].content == final_answer(template)
    assert final_answer(template) == "Done: /hello.md says hello to the world."


def test_lock_constraints_keep_name_and_version_only() -> None:
    lock = ("# header\naiosqlite==0.22.1 \\\n    --hash=sha256:abc \\\n    # via x\n"
            "uvloop==0.21.0 ; sys_platform != 'win32' \\\n    --hash=sha256:def\n")
    assert lock_constraints(lock) == ["aiosqlite==0.22.1", "uvloop==0.21.0"]
    real = lock_constraints((Path(__file__).parents[2] / "requirements.lock").read_text())
    assert "langgraph==1.2.24" in real and all("--hash" not in c for c in real)


def test_project_dependencies_come_from_pyproject() -> None:
    text = '[project]\nname = "x"\ndependencies = ["a==1", "b[c]==2"]\n'
    assert project_dependencies(text) == ["a==1", "b[c]==2"]


def test_the_stamp_changes_with_what_the_environment_is_made_of(tmp_path: Path) -> None:
    wanted = stamp(("aegra-api==0.6.0",), ["a==1"], ["a==1", "b==2"], "3.11.7")
    assert wanted == stamp(("aegra-api==0.6.0",), ["a==1"], ["b==2", "a==1"], "3.11.7")
    assert wanted != stamp(("aegra-api==0.6.1",), ["a==1"], ["a==1", "b==2"], "3.11.7")
    assert wanted != stamp(("aegra-api==0.6.0",), ["a==1"], ["a==1", "b==3"], "3.11.7")
    assert wanted != stamp(("aegra-api==0.6.0",), ["a==1"], ["a==1", "b==2"], "3.12.1")

    assert not stamp_matches(tmp_path, wanted)  # nothing there
    (tmp_path / STAMP).write_text(json.dumps(wanted))
    assert not stamp_matches(tmp_path, wanted)  # no interpreter: a half-made venv
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python").touch()
    assert stamp_matches(tmp_path, wanted)
    (tmp_path / STAMP).write_text("{not json")
    assert not stamp_matches(tmp_path, wanted)


def test_version_mismatches_name_each_difference() -> None:
    assert version_mismatches({"langgraph": "1.2.24"}, {"langgraph": "1.2.24"}) == {}
    assert version_mismatches({"langgraph": "1.2.24", "deepagents": "0.7.32"},
                              {"langgraph": "1.3.0"}) == {
        "deepagents": "0.7.32 here, None in Aegra's environment",
        "langgraph": "1.2.24 here, 1.3.0 in Aegra's environment"}


def test_the_process_tree_includes_children() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while child.pid not in descendants(os.getpid()):
            assert time.monotonic() < deadline, "the child never showed"
            time.sleep(0.01)
        sample = sample_tree(os.getpid())
        assert sample.hwm_mb > 0 and sample.cpu_seconds > 0
    finally:
        child.kill()
        child.wait(10)


def _run(side: str, concurrency: int, repeat: int, jobs_per_second: float,
         cpu_ms: float) -> dict[str, Any]:
    jobs = 10
    seconds = jobs / jobs_per_second
    return PeerRun(side, concurrency, repeat, jobs, seconds, [10.0 * i for i in range(1, 11)],
                   cpu_seconds=cpu_ms * jobs / 1000, system_seconds=0.001, rss_peak_mb=100.0,
                   client_cpu_seconds=0.01, machine_busy=0.5).summary()


def test_a_summary_has_the_rates_percentiles_and_cpu_per_job() -> None:
    summary = _run(OURS, 8, 0, 20.0, 30.0)
    assert summary["jobs_per_second"] == 20.0
    assert summary["cpu_ms_per_job"] == 30.0
    assert summary["latency_p50_ms"] == 55.0
    assert summary["latency_p99_ms"] == 99.1
    assert "latencies_ms" not in summary


def test_medians_and_paired_ratios_over_repeats() -> None:
    runs = [_run(OURS, 1, 0, 30.0, 20.0), _run(AEGRA_WAIT, 1, 0, 20.0, 40.0),
            _run(AEGRA_WAIT, 1, 1, 10.0, 40.0), _run(OURS, 1, 1, 20.0, 20.0),
            _run(OURS, 1, 2, 40.0, 30.0), _run(AEGRA_WAIT, 1, 2, 20.0, 30.0),
            _run(AEGRA_STREAM, 1, 0, 10.0, 50.0)]
    rows = {(row["concurrency"], row["side"]): row for row in medians(runs)}
    assert rows[(1, OURS)]["jobs_per_second"] == 30.0
    assert rows[(1, OURS)]["repeats"] == 3
    assert rows[(1, AEGRA_WAIT)]["cpu_ms_per_job"] == 40.0
    by_peer = {entry["peer"]: entry for entry in ratios(runs)}
    # per repeat 1.5, 2.0, 2.0: the median of the pairs, not the ratio of the medians
    assert by_peer[AEGRA_WAIT]["jobs_per_second"] == {"median": 2.0, "min": 1.5, "max": 2.0,
                                                       "repeats": 3}
    assert by_peer[AEGRA_WAIT]["cpu_per_job"]["median"] == 0.5
    assert by_peer[AEGRA_STREAM]["jobs_per_second"]["repeats"] == 1  # repeat 0 only

    table = runs_table(medians(runs)).splitlines()
    assert table[0].split() == ["C", "server", "jobs/s", "p50", "ms", "p95", "ms", "p99",
                                "ms", "CPU", "ms/job", "peak", "RSS", "MB", "machine", "busy"]
    assert len(table) == 2 + 3 and "agent-executor POST /" in table[-1]
    ratio_lines = ratio_table(ratios(runs)).splitlines()
    assert "2.00 (1.50-2.00)" in ratio_lines[-1] and "Aegra runs/wait" in ratio_lines[-1]
    assert ratio_lines[-2].split()[-2:] == ["3.00", "0.40"]  # one repeat: no range


def test_concurrencies_parse_or_stop_with_the_usage() -> None:
    parser = argparse.ArgumentParser()
    assert concurrencies(parser, "1, 8,16") == [1, 8, 16]
    for bad in ("x", "", "0,8"):
        with pytest.raises(SystemExit):
            concurrencies(parser, bad)
