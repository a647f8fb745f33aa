"""Real servers for the integration tests: PostgreSQL on 15433, a Redis-protocol
server (Dragonfly) on 16380 and NATS JetStream on 14222, as docker-compose.test.yml
or scripts/test-services.sh provide them. Each test creates its own database,
key prefix or stream names and removes them."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from agent_executor.adapters.metrics import PrometheusMetrics
from tests.integration.nats_harness import World, close_world, open_world

PG_PORT = int(os.environ.get("TEST_POSTGRES_PORT", "15433"))
DRAGONFLY_PORT = int(os.environ.get("TEST_DRAGONFLY_PORT", "16380"))
NATS_PORT = int(os.environ.get("TEST_NATS_PORT", "14222"))
HOST = "127.0.0.1"


def _require(service: str, port: int) -> None:
    try:
        socket.create_connection((HOST, port), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"{service} is not reachable on {HOST}:{port} ({exc}); start it with "
                    "`scripts/test-services.sh start` or `docker compose -f "
                    "docker-compose.test.yml up -d`", pytrace=False)


@dataclass(frozen=True)
class PostgresDatabase:
    host: str
    port: int
    user: str
    database: str

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    def env(self) -> dict[str, str]:
        return {"POSTGRES_HOST": self.host, "POSTGRES_PORT": str(self.port),
                "POSTGRES_DB": self.database, "POSTGRES_USER": self.user,
                "POSTGRES_PASSWORD": "", "POSTGRES_SCHEMA": "public"}


@pytest.fixture
async def postgres_db() -> AsyncIterator[PostgresDatabase]:
    """A fresh, empty database of its own, dropped afterwards."""
    _require("PostgreSQL", PG_PORT)
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(host=HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield PostgresDatabase(HOST, PG_PORT, "postgres", name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def dragonfly_port() -> int:
    _require("Dragonfly (Redis protocol)", DRAGONFLY_PORT)
    return DRAGONFLY_PORT


@pytest.fixture
def key_prefix() -> str:
    """A key/channel prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def nats_url() -> str:
    _require("NATS JetStream", NATS_PORT)
    return f"nats://{HOST}:{NATS_PORT}"


@pytest.fixture
async def world(nats_url: str, tmp_path: Path) -> AsyncIterator[World]:
    """A NATS consumer on streams of its own (tests/integration/nats_harness.py)."""
    w = await open_world(nats_url, tmp_path)
    try:
        yield w
    finally:
        await close_world(w)


@pytest.fixture
def metrics() -> PrometheusMetrics:
    """A registry of its own."""
    return PrometheusMetrics()


def metric_sample(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    """`agent_executor_{name}` with these labels, 0 when never counted."""
    value = metrics.registry.get_sample_value(f"agent_executor_{name}", labels or None)
    return value or 0.0
