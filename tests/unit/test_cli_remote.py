"""`status`, `cancel`, `resume` and `retry` against a small local service that speaks
the steering routes (CONTRACT section 2a) and keeps every request it got."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agent_executor.adapters.cli.args import build_parser
from agent_executor.adapters.cli.remote import describe_job, steer

TOKEN = "s3cret"
REQUESTS = [{"tool": "write_file", "call_id": "c1", "input": {"file_path": "/a.md"},
             "allowed_decisions": ["approve", "edit", "reject"]},
            {"tool": "write_file", "call_id": "c2", "input": {"file_path": "/b.md"},
             "allowed_decisions": ["approve", "edit", "reject"]}]


def job(job_id: str, status: str, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "trace_id": "t", "status": status, "attempts": 1, "run": 1,
            "source": "http", "created_at": "2026-12-02T10:00:00+00:00",
            "updated_at": "2026-12-02T10:00:01+00:00", "finished_at": None, **extra}


class Steerable:
    """The jobs and the requests received (method, path, body, authorization)."""

    def __init__(self) -> None:
        self.jobs = {
            "waiting": job("waiting", "interrupted", interrupt={
                "agent": "Orchestrator", "interrupt_id": "i-1", "requests": REQUESTS}),
            "running": job("running", "running"),
            "failed": job("failed", "failed", error={"type": "ModelError",
                                                     "message": "rate limited",
                                                     "retryable": True}),
        }
        self.received: list[tuple[str, str, Any, str | None]] = []

    def answer(self, method: str, path: str, body: Any, auth: str | None
               ) -> tuple[int, Any]:
        self.received.append((method, path, body, auth))
        if auth != f"Bearer {TOKEN}":
            return 401, {"error": "missing or invalid bearer token", "details": []}
        parts = path.strip("/").split("/")
        current = self.jobs.get(parts[1]) if len(parts) > 1 else None
        if current is None:
            return 404, {"error": f"no job with id {parts[-1]!r}", "details": []}
        action = parts[2] if len(parts) > 2 else None
        if method == "GET" and action is None:
            return 200, current
        if action == "cancel":
            if current["status"] in ("completed", "failed", "cancelled"):
                return 409, {"error": f"job {current['job_id']} is already "
                                      f"{current['status']}", "details": []}
            current.update(status="cancelled", reason=(body or {}).get("reason"))
            return 202, current
        if action == "retry":
            if current["status"] not in ("failed", "cancelled"):
                return 409, {"error": "not failed or cancelled", "details": []}
            current.update(status="pending", run=2)
            return 202, current
        if action == "resume":
            if body["interrupt_id"] != "i-1":
                return 409, {"error": f"waits on interrupt i-1, not {body['interrupt_id']!r}",
                             "details": []}
            if len(body["decisions"]) != 2:
                return 400, {"error": "invalid decisions",
                             "details": [f"decisions: {len(body['decisions'])} given, "
                                         "2 expected"]}
            current.update(status="pending")
            return 202, current
        return 404, {"error": "no route", "details": []}


@pytest.fixture
def service() -> Iterator[tuple[str, Steerable]]:
    state = Steerable()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, body = state.answer(self.command, self.path,
                                        json.loads(raw) if raw else None,
                                        self.headers.get("Authorization"))
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def cli(url: str, *argv: str, token: str | None = TOKEN, answers: list[str] | None = None
        ) -> tuple[int, str, str]:
    args = build_parser().parse_args([*argv, "--url", url,
                                      *(["--token", token] if token else [])])
    out, err = io.StringIO(), io.StringIO()
    pending = list(answers or [])
    code = steer(args, ask=lambda prompt: pending.pop(0), interactive=answers is not None,
                 out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_status_prints_the_job_readably_or_as_json(service: tuple[str, Steerable]) -> None:
    url, state = service
    code, out, _ = cli(url, "status", "waiting")
    assert code == 0
    assert out.startswith("job waiting: interrupted (run 1, attempts 1, from http)")
    assert '[1] write_file {"file_path": "/a.md"}' in out
    assert "agent-executor resume waiting" in out
    code, out, _ = cli(url, "status", "waiting", "--json")
    assert json.loads(out) == state.jobs["waiting"]
    assert state.received[0][:2] == ("GET", "/jobs/waiting")
    assert state.received[0][3] == f"Bearer {TOKEN}"


def test_cancel_sends_the_reason_and_a_finished_job_is_a_conflict(
        service: tuple[str, Steerable]) -> None:
    url, state = service
    code, out, _ = cli(url, "cancel", "running", "--reason", "too slow")
    assert code == 0 and out == "cancel asked for: job running is cancelled (run 1)\n"
    assert state.received[-1][:3] == ("POST", "/jobs/running/cancel", {"reason": "too slow"})
    code, _, err = cli(url, "cancel", "failed")
    assert code == 5 and err == "agent-executor cancel: job failed is already failed\n"
    assert state.received[-1][2] is None  # no reason: no body


def test_retry(service: tuple[str, Steerable]) -> None:
    url, state = service
    assert cli(url, "retry", "failed")[:2] == (0, "retried: job failed is pending (run 2)\n")
    assert state.received[-1][:2] == ("POST", "/jobs/failed/retry")


def test_approve_answers_every_pending_call_of_the_pending_interrupt(
        service: tuple[str, Steerable]) -> None:
    url, state = service
    code, out, err = cli(url, "resume", "waiting", "--approve")
    assert (code, err) == (0, ""), err
    assert state.received[-1][:3] == ("POST", "/jobs/waiting/resume", {
        "interrupt_id": "i-1", "decisions": [{"type": "approve"}, {"type": "approve"}]})


def test_reject_and_edit_and_explicit_decisions(service: tuple[str, Steerable]) -> None:
    url, state = service
    cli(url, "resume", "waiting", "--reject", "not now")
    assert state.received[-1][2]["decisions"] == [{"type": "reject", "message": "not now"}] * 2
    state.jobs["waiting"]["status"] = "interrupted"
    cli(url, "resume", "waiting", "--interrupt-id", "i-1", "--edit", '{"file_path": "/x"}',
        "--edit", '{"file_path": "/y"}')
    assert [r[0] for r in state.received[-1:]] == ["POST"]  # id given: no lookup needed
    assert state.received[-1][2]["decisions"] == [
        {"type": "edit", "input": {"file_path": "/x"}},
        {"type": "edit", "input": {"file_path": "/y"}}]
    code, _, _ = cli(url, "resume", "waiting", "--decisions",
                     '[{"type": "approve"}, {"type": "reject", "message": "no"}]')
    assert code == 0


def test_without_a_decision_option_it_asks_on_the_terminal(
        service: tuple[str, Steerable]) -> None:
    url, state = service
    code, out, err = cli(url, "resume", "waiting", answers=["a", "r", "no"])
    assert code == 0, err
    assert "[2/2] Orchestrator wants to call write_file" in err
    assert out == "resumed: job waiting is pending (run 1)\n"
    assert state.received[-1][2]["decisions"] == [{"type": "approve"},
                                                  {"type": "reject", "message": "no"}]
    code, _, err = cli(url, "resume", "running")  # not a terminal, nothing to ask anyway
    assert code == 5 and "not interrupted" in err


def test_errors_are_one_clear_message_and_a_distinct_exit_code(
        service: tuple[str, Steerable]) -> None:
    url, _ = service
    code, _, err = cli(url, "resume", "waiting", "--interrupt-id", "i-0", "--approve")
    assert code == 5 and "waits on interrupt i-1, not 'i-0'" in err
    code, _, err = cli(url, "resume", "waiting", "--interrupt-id", "i-1",
                       "--decisions", '[{"type": "approve"}]')
    assert code == 2 and err == ("agent-executor resume: invalid decisions\n"
                                 "  decisions: 1 given, 2 expected\n")
    code, _, err = cli(url, "resume", "waiting", "--edit", "{nope")
    assert code == 2 and "--edit: not valid JSON" in err
    code, _, err = cli(url, "resume", "waiting")  # no option and no terminal
    assert code == 2 and "give --approve" in err
    code, _, err = cli(url, "status", "nobody")
    assert code == 4 and err == "agent-executor status: no job with id 'nobody'\n"
    code, _, err = cli(url, "status", "waiting", token=None)
    assert code == 3 and "--token or AGENT_EXECUTOR_TOKEN" in err
    code, _, err = cli("http://127.0.0.1:9", "status", "waiting")
    assert code == 6 and err.startswith("agent-executor status: cannot reach "
                                        "http://127.0.0.1:9")
    assert "Traceback" not in err


def test_the_token_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch,
                                               service: tuple[str, Steerable]) -> None:
    url, state = service
    monkeypatch.setenv("AGENT_EXECUTOR_TOKEN", TOKEN)
    args = build_parser().parse_args(["status", "running", "--url", url])
    assert steer(args, out=io.StringIO(), err=io.StringIO()) == 0
    assert state.received[-1][3] == f"Bearer {TOKEN}"


def test_describe_job_shows_the_outcome() -> None:
    done = describe_job(job("j", "completed", finished_at="2026-12-02T10:00:02+00:00",
                            result={"output": "hi", "files": {"/b": "", "/a": ""}}))
    assert "  output: hi" in done and "  files: /a, /b" in done and "finished 2026" in done
    failed = describe_job(job("j", "failed", error={"type": "ModelError", "message": "429",
                                                    "retryable": True}))
    assert "  error: ModelError: 429 (retryable: `agent-executor retry`)" in failed
