"""The NATS consumer across server restarts and shutdowns (own throwaway nats-server)."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_executor.adapters.nats.connection import NatsConnection
from agent_executor.adapters.nats.probe import NatsReadinessProbe
from agent_executor.adapters.nats.publisher import NatsResultPublisher
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.events import END
from agent_executor.domain.result import AgentOutput, JobResult
from tests.integration.nats_harness import (
    NAMES,
    ScriptedRuntime,
    ThrowawayNats,
    World,
    close_world,
    eventually,
    free_port,
    job_data,
    open_world,
    structured_event,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ThrowawayNats]:
    assert shutil.which("nats-server"), "nats-server is not installed"
    nats_server = ThrowawayNats(tmp_path / "jetstream")
    await nats_server.start()
    try:
        yield nats_server
    finally:
        await nats_server.stop()


async def _results(world: World, count: int) -> list[dict[str, object]]:
    async def stored() -> bool:
        return len(await world.results()) >= count
    await eventually(stored, 20, f"{count} result(s)")
    return [json.loads(m.data or b"") for m in await world.results()]


async def test_a_job_completes_after_a_nats_restart_and_ready_follows_the_connection(
        server: ThrowawayNats, tmp_path: Path) -> None:
    world = await open_world(server.url, tmp_path)
    try:
        consumer = await world.consumer()
        connection = world.connections[0]
        probe = NatsReadinessProbe(connection, consumer)
        assert (await probe.check()).ok

        await server.stop()

        async def not_ready() -> bool:
            return not (await probe.check()).ok
        await eventually(not_ready, what="/ready to say not ready")
        assert "not connected" in str((await probe.check()).detail)
        publisher = NatsResultPublisher(connection, world.settings, NAMES, world.metrics,
                                        timeout_seconds=0.5)
        with pytest.raises(DependencyUnavailable):  # (the client may still send it later)
            await publisher.publish(JobResult.completed("j", "t", 1, AgentOutput("x"), 1))

        await server.start()

        async def ready() -> bool:
            return (await probe.check()).ok
        await eventually(ready, 20, "/ready to recover without a restart")
        await eventually(lambda: world.client.is_connected, 20, "the test client to reconnect")
        data = job_data()
        await world.publish(structured_event(data))

        async def completed() -> bool:
            ids = [json.loads(m.data or b"")["id"] for m in await world.results()]
            return f"{data['job_id']}:completed" in ids
        await eventually(completed, 20, "the job's result")
        await eventually(world.settled, what="the message acked")
    finally:
        await close_world(world)


async def test_a_lost_consumer_is_created_again_in_the_local_profile(
        server: ThrowawayNats, tmp_path: Path) -> None:
    world = await open_world(server.url, tmp_path)
    try:
        consumer = await world.consumer(consumer_check_seconds=0.2)
        await world.js.delete_consumer(world.settings.stream_name, world.settings.consumer_group)

        async def recreated() -> bool:
            try:
                await world.consumer_info()
            except Exception:
                return False
            return True
        await eventually(recreated, what="the consumer to be created again")
        await eventually(lambda: consumer.running, what="the loop to keep running")
        data = job_data()
        await world.publish(structured_event(data))
        [event] = await _results(world, 1)
        assert event["id"] == f"{data['job_id']}:completed"
    finally:
        await close_world(world)


async def test_stop_lets_an_in_flight_job_finish_within_the_grace_period(world: World) -> None:
    runtime = ScriptedRuntime()
    runtime.gate = asyncio.Event()
    consumer = await world.consumer(runtime=runtime, grace_seconds=20)
    data = job_data()
    await world.publish(structured_event(data))
    await asyncio.wait_for(runtime.started.wait(), 10)

    stopping = asyncio.create_task(consumer.stop())
    await eventually(lambda: not consumer.running, what="fetching to stop")
    assert not stopping.done() and consumer.in_flight == 1
    runtime.gate.set()
    await asyncio.wait_for(stopping, 10)

    [event] = await _results(world, 1)
    assert event["id"] == f"{data['job_id']}:completed"
    assert await world.settled()
    assert world.metric("nats_messages_processed_total", outcome="ack") == 1
    probe = NatsReadinessProbe(world.connections[0], consumer)
    assert (await probe.check()).detail == "the consumer is not fetching (stopped)"


async def test_stop_after_the_grace_period_naks_and_another_replica_finishes_the_job(
        world: World) -> None:
    stuck = ScriptedRuntime(tokens=("one", "two"))
    stuck.gate = asyncio.Event()  # never set: the job outlives the grace period
    first = await world.consumer(runtime=stuck, grace_seconds=0.3)
    data = job_data()
    await world.publish(structured_event(data))
    await asyncio.wait_for(stuck.started.wait(), 10)
    await asyncio.wait_for(first.stop(), 10)

    assert world.metric("nats_messages_processed_total", outcome="nak") == 1
    assert await world.results() == []
    record = await world.ledger.get(str(data["job_id"]))
    assert record is not None and not record.finished  # lease given back

    finisher = ScriptedRuntime(tokens=("three",))
    await world.consumer(runtime=finisher)
    [event] = await _results(world, 1)
    assert event["id"] == f"{data['job_id']}:completed"
    assert event["data"]["attempts"] == 2  # type: ignore[index]
    assert finisher.calls == [data["job_id"]]
    await eventually(world.settled, what="the redelivered message acked")
    assert world.events is not None
    seqs = [(e.seq, e.event_type) async for e in world.events.follow(str(data["job_id"]),
                                                                      live=False)]
    assert [s for s, _ in seqs] == [1, 2, 3, 4] and seqs[-1][1] == END


async def test_connect_gives_up_with_dependency_unavailable() -> None:
    with pytest.raises(DependencyUnavailable, match="not reachable"):
        await NatsConnection.connect(f"nats://127.0.0.1:{free_port()}",
                                     connect_timeout_seconds=0.5)


async def test_the_consumer_follows_the_deployed_ack_wait_and_max_deliver(world: World) -> None:
    from agent_executor.adapters.nats.streams import (
        consumer_config,
        intake_stream_config,
    )
    await world.js.add_stream(intake_stream_config(world.settings))
    deployed = consumer_config(world.settings)
    deployed.ack_wait, deployed.max_deliver = 9.0, 3
    await world.js.add_consumer(world.settings.stream_name, deployed)

    consumer = await world.consumer()

    assert consumer.max_deliver == 3
    assert consumer.progress_interval == 3.0
