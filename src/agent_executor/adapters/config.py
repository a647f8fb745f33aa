"""Environment variables to one frozen `Settings` (CONTRACT section 1).

Read once, in `main`. Every invalid value and, in the `production` profile,
every missing required variable is collected and reported together by
`ConfigError`, so an operator fixes them in one pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

PROFILES = ("local", "production")

# Defaults shared with the deploy manifests (deploy/claims/...): the consumer
# created there must match what the service expects.
NATS_ACK_WAIT_SECONDS = 60
NATS_MAX_DELIVER = 5
NATS_STATUS_DUPLICATE_WINDOW_SECONDS = 120
NATS_STATUS_STREAM_NAME = "AGENT_STATUS"
MAX_WORKERS = 256

POSTGRES_VARS = ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD")

# Every variable the service reads. Secret values are never logged or shown.
ENV_VARS: tuple[str, ...] = (
    "AGENT_EXECUTOR_PROFILE",
    "AGENT_EXECUTOR_DATA_DIR",
    "HOST",
    "PORT",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_SCHEMA",
    "DRAGONFLY_HOST",
    "DRAGONFLY_PORT",
    "DRAGONFLY_PASSWORD",
    "DRAGONFLY_DB",
    "NATS_URL",
    "NATS_STREAM_NAME",
    "NATS_CONSUMER_GROUP",
    "NATS_SUBJECT",
    "NATS_STATUS_SUBJECT_PREFIX",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "MAX_CONCURRENT_JOBS",
    "JOB_TIMEOUT_SECONDS",
    "MAX_EVENT_BYTES",
    "CLOUDEVENT_SOURCE",
    "CLOUDEVENT_TYPE_PREFIX",
    "LOG_LEVEL",
    "JOB_LEASE_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "MAX_JOB_ATTEMPTS",
    "HTTP_IDLE_TIMEOUT_SECONDS",
    "HTTP_BODY_TIMEOUT_SECONDS",
    "MODEL_TIMEOUT_SECONDS",
    "MODEL_MAX_RETRIES",
    "MODEL_ALLOWED_BASE_URLS",
    "WORKERS",
    "CORS_ALLOW_ORIGINS",
    "API_TOKENS",
    "JOB_MAX_MODEL_CALLS",
    "JOB_MAX_TOTAL_TOKENS",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SDK_DISABLED",
)
SECRET_VARS = frozenset({"POSTGRES_PASSWORD", "DRAGONFLY_PASSWORD", "OPENAI_API_KEY",
                         "ANTHROPIC_API_KEY",
                         "API_TOKENS"})


class ConfigError(Exception):
    """Start-up configuration is unusable; `problems` holds one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class PostgresSettings:
    host: str
    port: int
    database: str
    user: str
    password: str = field(repr=False)
    schema: str

    def dsn(self) -> str:
        """A libpq key/value DSN (no URL escaping pitfalls with odd passwords)."""
        parts = {"host": self.host, "port": str(self.port), "dbname": self.database,
                 "user": self.user, "password": self.password}
        return " ".join(f"{k}={_quote(v)}" for k, v in parts.items() if v)


@dataclass(frozen=True)
class DragonflySettings:
    host: str
    port: int
    password: str | None = field(repr=False)
    db: int


@dataclass(frozen=True)
class NatsSettings:
    url: str
    stream_name: str
    consumer_group: str
    subject: str
    status_subject_prefix: str
    ack_wait_seconds: int = NATS_ACK_WAIT_SECONDS
    max_deliver: int = NATS_MAX_DELIVER


@dataclass(frozen=True)
class Settings:
    profile: str
    host: str
    port: int
    data_dir: Path
    postgres: PostgresSettings | None
    dragonfly: DragonflySettings | None
    nats: NatsSettings | None
    max_concurrent_jobs: int
    job_timeout_seconds: float
    max_event_bytes: int
    cloudevent_source: str
    cloudevent_type_prefix: str
    log_level: str
    job_lease_seconds: float = 30.0
    shutdown_grace_seconds: float = 25.0
    max_job_attempts: int = 5
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    anthropic_api_key: str | None = field(default=None, repr=False)
    http_idle_timeout_seconds: float = 75.0
    http_body_timeout_seconds: float = 30.0
    model_timeout_seconds: float = 120.0
    model_max_retries: int = 2
    model_allowed_base_urls: tuple[str, ...] = ()
    cors_allow_origins: tuple[str, ...] = ()  # () no CORS; ("*",) any origin
    api_tokens: tuple[str, ...] = field(default=(), repr=False)  # () no auth
    job_max_model_calls: int | None = None  # None: no limit
    job_max_total_tokens: int | None = None
    tracing: bool = False  # an OTLP endpoint is set (the SDK reads the other OTEL_*)
    otel_service_name: str = "agent-executor"
    workers: int = 1  # `serve` processes on the one port; each runs max_concurrent_jobs

    @property
    def execute_type(self) -> str:
        return f"{self.cloudevent_type_prefix}.execute"


T = TypeVar("T")


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return default
        return value.strip()

    def parsed(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            shown = "<hidden>" if name in SECRET_VARS else repr(raw)
            self.problems.append(f"{name}={shown}: {what}")
            return default


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value
    return parse


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError(raw)
    return value


def _limit(raw: str) -> int | None:
    return _int_in(1, 10**15)(raw)


def _tracing(r: _Reader) -> bool:
    """On when an OTLP endpoint is set, unless the SDK or its trace exporter is off."""
    endpoint = r.text("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or r.text(
        "OTEL_EXPORTER_OTLP_ENDPOINT")
    disabled = (r.text("OTEL_SDK_DISABLED") or "").lower() == "true"
    exporter = (r.text("OTEL_TRACES_EXPORTER") or "otlp").lower()
    return bool(endpoint) and not disabled and exporter != "none"


def _url_prefixes(raw: str) -> tuple[str, ...]:
    prefixes = tuple(p.strip() for p in raw.split(",") if p.strip())
    for prefix in prefixes:
        scheme, sep, rest = prefix.partition("://")
        if scheme not in ("http", "https") or not sep or not rest:
            raise ValueError(raw)
    return prefixes


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the environment; raise `ConfigError` naming every bad or missing variable."""
    r = _Reader(os.environ if env is None else env)
    profile = r.text("AGENT_EXECUTOR_PROFILE", "local") or "local"
    if profile not in PROFILES:
        choices = ", ".join(PROFILES)
        r.problems.append(f"AGENT_EXECUTOR_PROFILE={profile!r}: must be one of {choices}")
    port = r.parsed("PORT", 8080, _int_in(1, 65535), "must be a port number 1-65535")
    postgres = _postgres(r)
    dragonfly = _dragonfly(r)
    nats = _nats(r)
    if profile == "production":
        missing = [n for n in POSTGRES_VARS if r.text(n) is None]
        missing += [n for n in ("DRAGONFLY_HOST", "NATS_URL") if r.text(n) is None]
        if missing:
            r.problems.append(
                "production profile requires: " + ", ".join(missing) + " (not set)")
    settings = Settings(
        profile=profile,
        host=r.text("HOST", "0.0.0.0") or "0.0.0.0",
        port=port,
        data_dir=Path(r.text("AGENT_EXECUTOR_DATA_DIR", ".agent-executor") or ".agent-executor"),
        postgres=postgres,
        dragonfly=dragonfly,
        nats=nats,
        max_concurrent_jobs=r.parsed("MAX_CONCURRENT_JOBS", 8, _int_in(1, 10_000),
                                     "must be a whole number from 1 to 10000"),
        job_timeout_seconds=r.parsed("JOB_TIMEOUT_SECONDS", 3600.0, _positive_float,
                                     "must be a positive number of seconds"),
        max_event_bytes=r.parsed("MAX_EVENT_BYTES", 1_048_576, _int_in(1024, 1 << 30),
                                 "must be a whole number of bytes from 1024 to 1073741824"),
        cloudevent_source=r.text("CLOUDEVENT_SOURCE", "agent-executor") or "agent-executor",
        cloudevent_type_prefix=r.text("CLOUDEVENT_TYPE_PREFIX", "dev.my-platform.agent")
        or "dev.my-platform.agent",
        log_level=(r.text("LOG_LEVEL", "INFO") or "INFO").upper(),
        job_lease_seconds=r.parsed("JOB_LEASE_SECONDS", 30.0, _positive_float,
                                   "must be a positive number of seconds"),
        shutdown_grace_seconds=r.parsed("SHUTDOWN_GRACE_SECONDS", 25.0, _positive_float,
                                        "must be a positive number of seconds"),
        max_job_attempts=r.parsed("MAX_JOB_ATTEMPTS", 5, _int_in(1, 1000),
                                  "must be a whole number from 1 to 1000"),
        openai_api_key=r.text("OPENAI_API_KEY"),
        openai_base_url=r.text("OPENAI_BASE_URL"),
        anthropic_api_key=r.text("ANTHROPIC_API_KEY"),
        http_idle_timeout_seconds=r.parsed("HTTP_IDLE_TIMEOUT_SECONDS", 75.0, _positive_float,
                                           "must be a positive number of seconds"),
        http_body_timeout_seconds=r.parsed("HTTP_BODY_TIMEOUT_SECONDS", 30.0, _positive_float,
                                           "must be a positive number of seconds"),
        model_timeout_seconds=r.parsed("MODEL_TIMEOUT_SECONDS", 120.0, _positive_float,
                                       "must be a positive number of seconds"),
        model_max_retries=r.parsed("MODEL_MAX_RETRIES", 2, _int_in(0, 100),
                                   "must be a whole number from 0 to 100"),
        model_allowed_base_urls=r.parsed("MODEL_ALLOWED_BASE_URLS", (), _url_prefixes,
                                         "must be comma-separated http:// or https:// URLs"),
        cors_allow_origins=_cors_origins(r),
        api_tokens=_api_tokens(r),
        job_max_model_calls=r.parsed("JOB_MAX_MODEL_CALLS", None, _limit,
                                     "must be a whole number from 1 to 10^15 (unset: no limit)"),
        job_max_total_tokens=r.parsed("JOB_MAX_TOTAL_TOKENS", None, _limit,
                                      "must be a whole number from 1 to 10^15 (unset: no limit)"),
        tracing=_tracing(r),
        otel_service_name=r.text("OTEL_SERVICE_NAME", "agent-executor") or "agent-executor",
        workers=r.parsed("WORKERS", 1, _int_in(1, MAX_WORKERS),
                         f"must be a whole number from 1 to {MAX_WORKERS}"),
    )
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        r.problems.append(
            f"LOG_LEVEL={settings.log_level!r}: must be DEBUG, INFO, WARNING or ERROR")
    if r.problems:
        raise ConfigError(r.problems)
    return settings


def check_workers(settings: Settings) -> None:
    """`serve` with more than one worker: the embedded ledger, event stream and cancel
    broadcast live inside one process, so each worker would have its own. Raises
    `ConfigError` naming what is needed."""
    missing = [name for name, value in (("POSTGRES_HOST", settings.postgres),
                                        ("DRAGONFLY_HOST", settings.dragonfly))
               if value is None]
    if settings.workers > 1 and missing:
        raise ConfigError([
            f"WORKERS={settings.workers}: more than one worker needs PostgreSQL and Dragonfly "
            "(the embedded ledger, event stream and cancel broadcast live in one process); "
            "set " + " and ".join(missing) + ", or WORKERS=1"])


def _postgres(r: _Reader) -> PostgresSettings | None:
    port = r.parsed("POSTGRES_PORT", 5432, _int_in(1, 65535), "must be a port number 1-65535")
    host = r.text("POSTGRES_HOST")
    if host is None:
        return None
    missing = [n for n in POSTGRES_VARS[1:3] if r.text(n) is None]
    if missing:
        r.problems.append("POSTGRES_HOST is set, so " + ", ".join(missing) + " must be set too")
    return PostgresSettings(host=host, port=port, database=r.text("POSTGRES_DB", "") or "",
                            user=r.text("POSTGRES_USER", "") or "",
                            password=r.text("POSTGRES_PASSWORD", "") or "",
                            schema=r.text("POSTGRES_SCHEMA", "public") or "public")


def _dragonfly(r: _Reader) -> DragonflySettings | None:
    port = r.parsed("DRAGONFLY_PORT", 6379, _int_in(1, 65535), "must be a port number 1-65535")
    db = r.parsed("DRAGONFLY_DB", 0, _int_in(0, 15), "must be a database number 0-15")
    host = r.text("DRAGONFLY_HOST")
    if host is None:
        return None
    return DragonflySettings(host=host, port=port, password=r.text("DRAGONFLY_PASSWORD"), db=db)


def _nats(r: _Reader) -> NatsSettings | None:
    url = r.text("NATS_URL")
    if url is None:
        return None
    if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
        r.problems.append(f"NATS_URL={url!r}: must start with nats://, tls://, ws:// or wss://")
    return NatsSettings(
        url=url,
        stream_name=r.text("NATS_STREAM_NAME", "AGENT_EXECUTION") or "AGENT_EXECUTION",
        consumer_group=r.text("NATS_CONSUMER_GROUP", "agent-executor-workers")
        or "agent-executor-workers",
        subject=r.text("NATS_SUBJECT", "agent.execute.*") or "agent.execute.*",
        status_subject_prefix=r.text("NATS_STATUS_SUBJECT_PREFIX", "agent.status")
        or "agent.status",
    )


_ORIGIN = re.compile(r"^https?://[^/\s:?#]+(:[0-9]{1,5})?$")
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")  # RFC 6750 b64token


def _items(r: _Reader, name: str) -> list[str]:
    return [item.strip() for item in (r.text(name) or "").split(",") if item.strip()]


def _cors_origins(r: _Reader) -> tuple[str, ...]:
    origins = _items(r, "CORS_ALLOW_ORIGINS")
    bad = [o for o in origins if o != "*" and not _ORIGIN.match(o)]
    if bad:
        r.problems.append(f"CORS_ALLOW_ORIGINS: {', '.join(repr(b) for b in bad)} not an "
                          "origin (scheme://host[:port], no path) or *")
    elif "*" in origins and len(origins) > 1:
        r.problems.append("CORS_ALLOW_ORIGINS: * allows every origin; list origins or * alone")
    return tuple(o for o in origins if o not in bad)


def _api_tokens(r: _Reader) -> tuple[str, ...]:
    tokens = _items(r, "API_TOKENS")
    bad = sum(1 for t in tokens if not _TOKEN.match(t))
    if bad:  # never the value: it is a secret
        r.problems.append(f"API_TOKENS=<hidden>: {bad} of {len(tokens)} tokens hold characters "
                          "a bearer token cannot (letters, digits and -._~+/ then any =)")
    return tuple(t for t in tokens if _TOKEN.match(t))


def _quote(value: str) -> str:
    if value and all(c.isalnum() or c in "._-/:" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
