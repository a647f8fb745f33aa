"""Logging set-up, done once by `main`: one line per record, with job fields.

Every logger goes through the one root handler (JSON lines in production), also
the libraries' that bring their own handler (hypercorn's error log) and Python
warnings. Libraries that log each request at INFO (httpx's "HTTP Request: ..."
for every model call, the provider SDKs) are lowered to WARNING: they carry no
job fields and would put URLs of a job's choosing in the log.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from types import TracebackType

from opentelemetry import trace

FIELDS = ("job_id", "trace_id", "otel_trace_id", "span_id", "worker")
QUIET = ("httpx", "httpcore", "openai", "anthropic", "ollama", "langchain", "langsmith",
         "hypercorn.access", "aiosqlite", "asyncio", "urllib3")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        for name in FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{n}={getattr(record, n)}" for n in FIELDS if hasattr(record, n))
        return f"{line} [{extra}]" if extra else line


class SpanFields(logging.Filter):
    """The current span's ids on every record logged inside one (a job's run, when
    tracing is on): `otel_trace_id` and `span_id`, as an OTLP back end shows them."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.otel_trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
        return True


class WorkerField(logging.Filter):
    """`worker`: which of the supervisor's worker processes logged the record."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.number = number

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.number
        return True


def configure_logging(level: str, json_lines: bool, worker: int | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(SpanFields())
    if worker is not None:
        handler.addFilter(WorkerField(worker))
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for existing in list(logging.root.manager.loggerDict.values()):
        if isinstance(existing, logging.Logger):  # not a PlaceHolder
            existing.handlers.clear()
            existing.propagate = True
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    if json_lines:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_thread_uncaught


def _log_uncaught(kind: type[BaseException], value: BaseException,
                  tb: TracebackType | None) -> None:
    logging.getLogger("agent_executor").critical("uncaught %s", kind.__name__,
                                                 exc_info=(kind, value, tb))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback)
