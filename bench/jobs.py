"""The two job shapes, derived from examples/jobs: scripted models, `delay_ms` 0."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "jobs"
SHAPES = ("single", "team")
EXECUTE_TYPE = "dev.my-platform.agent.execute"


class NoModelKeys:
    """Provider settings with no keys: the scripted model needs none."""

    openai_api_key: str | None = None
    openai_base_url: str | None = None
    anthropic_api_key: str | None = None
    model_timeout_seconds: float = 120.0
    model_max_retries: int = 2
    model_allowed_base_urls: tuple[str, ...] = ()


def _without_delay(definition: dict[str, Any]) -> dict[str, Any]:
    for node in definition["nodes"]:
        node["config"]["model"]["delay_ms"] = 0
    return definition


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def shape_template(shape: str) -> dict[str, Any]:
    """`single`: one agent, 3 model steps (todos, write a file, answer), hello.json.
    `team`: an orchestrator delegating to two specialists, spec-builder.json
    (8 model calls in all)."""
    if shape == "single":
        data = _example("hello.json")
    elif shape == "team":
        data = _example("spec-builder.json")
    else:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    _without_delay(data["agent_definition"])
    return data


def final_answer(template: dict[str, Any]) -> str:
    """The orchestrator's last scripted answer: the job's output when it ran to the end."""
    node = template["agent_definition"]["nodes"][0]
    answer: str = node["config"]["model"]["responses"][-1]["content"]
    return answer


def shapes(choice: str) -> list[str]:
    return list(SHAPES) if choice == "both" else [choice]


def job_data(template: dict[str, Any], job_id: str) -> dict[str, Any]:
    data = copy.deepcopy(template)
    data["job_id"] = job_id
    data["trace_id"] = uuid.uuid4().hex
    return data


def structured_event(data: dict[str, Any]) -> bytes:
    """The job as a structured-mode CloudEvent (CONTRACT sections 2 and 5)."""
    return json.dumps({"specversion": "1.0", "id": uuid.uuid4().hex, "source": "bench",
                       "type": EXECUTE_TYPE, "datacontenttype": "application/json",
                       "data": data}, separators=(",", ":")).encode()
