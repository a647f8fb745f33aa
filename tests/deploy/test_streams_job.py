"""The stream Job's script (ensure_streams.py in nats-stream.yaml's ConfigMap) against a
real JetStream server: it creates what is missing, adopts a stream the replaced service
left (`limits` retention) without failing on it or recreating it, gives the consumer the
settings the service expects, and changes nothing on a second run.

Each test renames the streams, subjects and consumer to names of its own."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StreamConfig

from agent_executor.adapters import config
from tests.deploy.render import CLAIMS

NATS_PORT = int(os.environ.get("TEST_NATS_PORT", "14222"))
NATS_URL = f"nats://127.0.0.1:{NATS_PORT}"
SCRIPT = "ensure_streams.py"
EXECUTION = "agent-execution.stream.json"
STATUS = "agent-status.stream.json"
CONSUMER = "agent-executor-workers.consumer.json"

pytestmark = pytest.mark.integration


def configmap_data() -> dict[str, str]:
    docs = yaml.safe_load_all((CLAIMS / "nats-stream.yaml").read_text())
    (configmap,) = [d for d in docs if d and d["kind"] == "ConfigMap"]
    data: dict[str, str] = configmap["data"]
    return data


@dataclass
class Setup:
    folder: Path
    execution: dict[str, Any]
    status: dict[str, Any]
    consumer: dict[str, Any]
    js: Any

    async def run(self, **env: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, str(self.folder / SCRIPT),
            env={**os.environ, "NATS_URL": NATS_URL, "STREAMS_CONFIG_DIR": str(self.folder),
                 "STREAMS_WAIT_SECONDS": "5", **env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return process.returncode, out.decode()


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    try:
        socket.create_connection(("127.0.0.1", NATS_PORT), timeout=2).close()
    except OSError as exc:
        pytest.fail(f"NATS JetStream is not reachable on {NATS_URL} ({exc})", pytrace=False)
    data = configmap_data()
    tag = uuid.uuid4().hex[:10]
    execution, status, consumer = (json.loads(data[n]) for n in (EXECUTION, STATUS, CONSUMER))
    execution["name"] = f"DT{tag.upper()}_EXECUTION"
    execution["subjects"] = [f"dt{tag}.execute.*"]
    status["name"] = f"DT{tag.upper()}_STATUS"
    status["subjects"] = [f"dt{tag}.status.*"]
    consumer["durable_name"] = f"dt{tag}-workers"
    consumer["filter_subject"] = f"dt{tag}.execute.*"
    for name, definition in ((EXECUTION, execution), (STATUS, status), (CONSUMER, consumer)):
        (tmp_path / name).write_text(json.dumps(definition))
    (tmp_path / SCRIPT).write_text(data[SCRIPT])
    nc = await nats.connect(NATS_URL)
    try:
        yield Setup(tmp_path, execution, status, consumer, nc.jetstream())
    finally:
        for stream in (execution["name"], status["name"]):
            try:
                await nc.jetstream().delete_stream(stream)
            except nats.js.errors.NotFoundError:
                pass
        await nc.close()


async def test_creates_what_is_missing_and_a_second_run_changes_nothing(setup: Setup) -> None:
    code, out = await setup.run()
    assert code == 0, out
    execution = await setup.js.stream_info(setup.execution["name"])
    status = await setup.js.stream_info(setup.status["name"])
    assert execution.config.retention == RetentionPolicy.WORK_QUEUE
    assert status.config.duplicate_window == config.NATS_STATUS_DUPLICATE_WINDOW_SECONDS
    consumer = await setup.js.consumer_info(setup.execution["name"],
                                            setup.consumer["durable_name"])
    assert consumer.config.ack_wait == config.NATS_ACK_WAIT_SECONDS
    assert consumer.config.max_deliver == config.NATS_MAX_DELIVER
    assert consumer.config.ack_policy == AckPolicy.EXPLICIT
    assert consumer.config.deliver_subject is None, "a pull consumer"

    code, out = await setup.run()
    assert code == 0, out
    assert out.count("unchanged") == 3, out
    assert (await setup.js.stream_info(setup.execution["name"])).state.first_seq == (
        execution.state.first_seq)


async def test_adopts_a_limits_stream_and_its_consumer_without_recreating_them(
        setup: Setup) -> None:
    name, durable = setup.execution["name"], setup.consumer["durable_name"]
    await setup.js.add_stream(StreamConfig(
        name=name, subjects=[f"{setup.execution['subjects'][0][:-2]}.>"],
        retention=RetentionPolicy.LIMITS, max_age=3600, duplicate_window=5))
    await setup.js.add_consumer(name, ConsumerConfig(
        durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=30, max_deliver=10))
    for n in range(3):
        await setup.js.publish(setup.execution["subjects"][0].replace("*", f"j{n}"), b"{}")
    await setup.js.add_stream(StreamConfig(
        name=setup.status["name"], subjects=setup.status["subjects"], duplicate_window=5))

    code, out = await setup.run()
    assert code == 0, out
    stream = await setup.js.stream_info(name)
    assert stream.config.retention == RetentionPolicy.LIMITS, "retention left alone"
    assert stream.config.max_age == 3600
    assert stream.state.messages == 3, "not recreated: the old messages are still there"
    assert stream.config.subjects == [f"{setup.execution['subjects'][0][:-2]}.>"], (
        "a subject the stream already covers is not added twice")
    status = await setup.js.stream_info(setup.status["name"])
    assert status.config.duplicate_window == config.NATS_STATUS_DUPLICATE_WINDOW_SECONDS
    consumer = await setup.js.consumer_info(name, durable)
    assert consumer.config.ack_wait == config.NATS_ACK_WAIT_SECONDS
    assert consumer.config.max_deliver == config.NATS_MAX_DELIVER
    assert consumer.num_pending == 3, "the adopted consumer keeps its position"

    code, out = await setup.run()
    assert code == 0 and out.count("unchanged") == 3, out


async def test_a_new_consumer_on_an_adopted_stream_starts_after_the_old_one(
        setup: Setup) -> None:
    name = setup.execution["name"]
    await setup.js.add_stream(StreamConfig(
        name=name, subjects=setup.execution["subjects"], retention=RetentionPolicy.LIMITS))
    await setup.js.add_consumer(name, ConsumerConfig(
        durable_name="legacy", ack_policy=AckPolicy.EXPLICIT))
    for n in range(3):
        await setup.js.publish(setup.execution["subjects"][0].replace("*", f"j{n}"), b"{}")
    legacy = await setup.js.pull_subscribe_bind("legacy", stream=name)
    for message in await legacy.fetch(2, timeout=5):
        await message.ack_sync()

    code, out = await setup.run(ADOPT_FROM_CONSUMER="legacy")
    assert code == 0, out
    ours = await setup.js.consumer_info(name, setup.consumer["durable_name"])
    assert ours.num_pending == 1, "only what the old consumer had not finished"


async def test_a_new_consumer_on_a_limits_stream_replays_nothing_by_default(
        setup: Setup) -> None:
    name = setup.execution["name"]
    await setup.js.add_stream(StreamConfig(
        name=name, subjects=setup.execution["subjects"], retention=RetentionPolicy.LIMITS))
    for n in range(3):
        await setup.js.publish(setup.execution["subjects"][0].replace("*", f"j{n}"), b"{}")

    code, out = await setup.run()
    assert code == 0, out
    ours = await setup.js.consumer_info(name, setup.consumer["durable_name"])
    assert ours.num_pending == 0, "finished jobs of the old service are not run again"
    assert "starts at new messages" in out


async def test_fails_on_a_push_consumer_it_cannot_use(setup: Setup) -> None:
    name = setup.execution["name"]
    await setup.js.add_stream(StreamConfig(
        name=name, subjects=setup.execution["subjects"], retention=RetentionPolicy.LIMITS))
    await setup.js.add_consumer(name, ConsumerConfig(
        durable_name=setup.consumer["durable_name"], deliver_subject="push.somewhere",
        ack_policy=AckPolicy.EXPLICIT))
    code, out = await setup.run()
    assert code == 1 and "not a pull consumer" in out, out


async def test_fails_within_its_wait_when_nats_is_unreachable(setup: Setup) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    setup_url = f"nats://127.0.0.1:{port}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(setup.folder / SCRIPT),
        env={**os.environ, "NATS_URL": setup_url, "STREAMS_CONFIG_DIR": str(setup.folder),
             "STREAMS_WAIT_SECONDS": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1
    assert b"not usable within 1s (STREAMS_WAIT_SECONDS)" in out
