"""Fixtures of the reliability suite: each test gets servers of its own (stopped and
removed by finalizers) and a production-profile stack on them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.harness import Stack
from tests.reliability.servers import NatsServer, PostgresServer, RedisServer


@pytest.fixture
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    server = PostgresServer()
    request.addfinalizer(server.close)
    return server


@pytest.fixture
def redis_server(request: pytest.FixtureRequest) -> RedisServer:
    server = RedisServer()
    request.addfinalizer(server.close)
    return server


@pytest.fixture
def nats_server(request: pytest.FixtureRequest) -> NatsServer:
    server = NatsServer()
    request.addfinalizer(server.close)
    return server


@pytest.fixture
async def stack(request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer,
                redis_server: RedisServer, nats_server: NatsServer) -> Stack:
    """Servers started, migrated, streams and consumer created; no workers yet."""
    built = Stack(tmp_path, postgres_server, redis_server, nats_server)
    request.addfinalizer(built.stop_workers)  # before the servers' finalizers
    await built.prepare()
    return built
