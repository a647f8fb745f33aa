"""Logging: JSON lines only, every library through the one handler, no content at INFO."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.embedded.log_publisher import LoggingResultPublisher
from agent_executor.adapters.logs import configure_logging
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.result import AgentOutput, JobResult

SECRET = "the-users-private-greeting-7f3a"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
    return parsed


async def test_libraries_and_warnings_log_json_lines_and_httpx_stays_quiet(
        capfd: pytest.CaptureFixture[str]) -> None:
    # hypercorn gives its error log a plain-text handler of its own when asked to
    own = logging.getLogger("hypercorn.error")
    own.addHandler(logging.StreamHandler())
    own.propagate = False
    configure_logging("INFO", json_lines=True)

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.post("http://model.example/v1/chat/completions", json={})
    logging.getLogger("hypercorn.error").info("Running on http://127.0.0.1:1")
    logging.getLogger("agent_executor.x").info("job done", extra={"job_id": "j1"})
    warnings.warn("a library deprecation", DeprecationWarning, stacklevel=1)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("agent_executor.x").exception("failed")
    await asyncio.sleep(0)
    out, err = capfd.readouterr()
    assert out == ""
    entries = json_lines(err)
    messages = [e["message"] for e in entries]
    assert "Running on http://127.0.0.1:1" in messages
    assert not any("HTTP Request" in str(m) for m in messages)
    assert any("a library deprecation" in str(m) for m in messages)
    assert {"job_id": "j1"}.items() <= next(e for e in entries
                                            if e["message"] == "job done").items()
    assert "boom" in str(next(e for e in entries if e["message"] == "failed")["exc"])


async def test_results_are_logged_by_id_status_and_size_content_only_at_debug(
        caplog: pytest.LogCaptureFixture) -> None:
    publisher = LoggingResultPublisher(EventNames("tests", "dev.my-platform.agent"),
                                       PrometheusMetrics())
    output = AgentOutput(output=SECRET, files={"/hello.md": SECRET},
                         messages=[{"role": "assistant", "content": SECRET}])
    result = JobResult("job-1", "trace-1", "completed", 1, datetime.now(UTC), output=output,
                       duration_ms=5)
    with caplog.at_level(logging.INFO):
        await publisher.publish(result)
    info = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(info) == 1 and SECRET not in info[0].getMessage()
    assert "job-1:completed" in info[0].getMessage() and "bytes" in info[0].getMessage()
    assert getattr(info[0], "job_id", None) == "job-1"
    caplog.clear()
    with caplog.at_level(logging.DEBUG):
        await publisher.publish(result)
    assert any(SECRET in r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
