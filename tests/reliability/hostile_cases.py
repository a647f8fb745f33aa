"""Hypothesis strategies for hostile input beyond one broken field (cloudevent_cases.py):
definitions built to exhaust the process, requests built to grow /metrics, and a
sampler that draws concrete examples for a live run."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tests.reliability.harness import HELLO

T = TypeVar("T")
LIMIT_BREAKERS = ("10k nodes", "huge prompt", "prompt over MAX_EVENT_BYTES", "huge tool args",
                  "deep tool args", "many responses", "many tools", "huge description")


@dataclass(frozen=True)
class HostileJob:
    data: dict[str, Any]
    what: str
    oversize: bool  # larger than MAX_EVENT_BYTES (1 MiB): a 413, never read


def _base(what: str) -> dict[str, Any]:
    data = copy.deepcopy(HELLO)
    data["job_id"] = f"hostile-{uuid.uuid4().hex[:16]}"
    data["trace_id"] = uuid.uuid4().hex
    data["input_payload"]["messages"][0]["content"] = what
    return data


@st.composite
def hostile_definitions(draw: st.DrawFn) -> HostileJob:
    """A readable job whose definition passes one of the limits of docs/security.md."""
    what = draw(st.sampled_from(LIMIT_BREAKERS))
    data = _base(what)
    definition = data["agent_definition"]
    orchestrator = definition["nodes"][0]["config"]
    model = orchestrator["model"]
    oversize = False
    if what == "10k nodes":
        count = draw(st.integers(65, 10_000))
        definition["nodes"] += [{"id": f"n{i}", "type": "Specialist", "config": {}}
                                for i in range(count)]
    elif what == "huge prompt":
        orchestrator["system_prompt"] = "p" * draw(st.integers(262_145, 900_000))
    elif what == "prompt over MAX_EVENT_BYTES":
        orchestrator["system_prompt"] = "p" * draw(st.integers(1_048_577, 1_200_000))
        oversize = True
    elif what == "huge tool args":
        content = "a" * draw(st.integers(262_145, 900_000))
        model["responses"][0]["tool_calls"] = [{"name": "write_file", "args": {
            "file_path": "/big.txt", "content": content}}]
    elif what == "deep tool args":
        args: Any = "leaf"
        for _ in range(draw(st.integers(33, 50))):  # the event stays within 64 levels
            args = {"k": args}
        model["responses"][0]["tool_calls"] = [{"name": "ls", "args": args}]
    elif what == "many responses":
        model["responses"] = model["responses"][:1] * draw(st.integers(257, 5_000))
    elif what == "many tools":
        orchestrator["tools"] = ["current_time"] * draw(st.integers(65, 5_000))
    else:
        definition["nodes"].append({"id": "w", "type": "Specialist", "config": {
            "name": "w", "system_prompt": "w", "description": "d" * draw(
                st.integers(16_385, 500_000)), "model": copy.deepcopy(model)}})
    return HostileJob(data, what, oversize)


methods = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ-_!"), min_size=1, max_size=16)
path_segments = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FFF), min_size=1,
                        max_size=12).map(lambda s: quote(s, safe=""))
paths = st.lists(path_segments, min_size=1, max_size=5).map(lambda p: "/" + "/".join(p)) | \
    st.sampled_from(["/jobs", "/jobs/", "/health/x", "/metrics?x=1", "/ready/../health"])


def draw(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """`count` examples of `strategy` (generation only: no shrinking, no database)."""
    drawn: list[T] = []

    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None)
    @given(strategy)
    def collect(value: T) -> None:
        drawn.append(value)
    collect()
    return drawn
