"""Jobs over NATS JetStream (on 14222): intake, results, settlement, duplicates, poison."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from agent_executor.adapters.dragonfly.event_stream import DragonflyEventStream
from agent_executor.adapters.nats.probe import NatsReadinessProbe
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import ModelError
from agent_executor.domain.events import END, LLM_STREAM
from agent_executor.domain.job import Job
from agent_executor.domain.result import AgentOutput
from agent_executor.ports.runtime import EventSink
from tests.integration.nats_harness import (
    BrokenLedger,
    ScriptedRuntime,
    World,
    binary_event,
    close_world,
    eventually,
    job_data,
    open_world,
    structured_event,
)

pytestmark = pytest.mark.integration


async def _one_result(world: World, status: str = "completed") -> dict[str, object]:
    async def stored() -> bool:
        return len(await world.results()) >= 1
    await eventually(stored, what="a result event")
    await eventually(world.settled, what="the intake message to be settled")
    [message] = await world.results()
    assert message.subject == f"{world.settings.status_subject_prefix}.{status}"
    assert message.headers is not None
    event: dict[str, object] = json.loads(message.data or b"")
    assert message.headers["Nats-Msg-Id"] == event["id"]
    assert message.headers["Content-Type"] == "application/cloudevents+json"
    return event


async def test_structured_job_gives_one_completed_result(world: World) -> None:
    consumer = await world.consumer()
    data = job_data()
    await world.publish(structured_event(data),
                        {"Content-Type": "application/cloudevents+json"})
    event = await _one_result(world)

    assert event["id"] == f"{data['job_id']}:completed"
    assert event["type"] == "dev.my-platform.agent.completed"
    assert event["subject"] == data["job_id"]
    assert str(event["traceparent"]).startswith(f"00-{data['trace_id']}-")
    payload = event["data"]
    assert isinstance(payload, dict)
    assert payload["status"] == "completed" and payload["attempts"] == 1
    assert payload["result"]["output"] == "Hello world"
    assert world.runtime.calls == [data["job_id"]]
    assert world.metric("nats_messages_received_total") == 1
    assert world.metric("nats_messages_processed_total", outcome="ack") == 1
    assert world.metric("jobs_total", status="completed", source="nats") == 1
    assert world.metric("results_published_total", status="completed") == 1
    assert world.events is not None
    seen = [e async for e in world.events.follow(str(data["job_id"]), live=False)]
    assert [e.seq for e in seen] == [1, 2, 3] and seen[-1].event_type == END
    assert (await NatsReadinessProbe(world.connections[0], consumer).check()).ok


async def test_binary_job_and_a_json_body_without_content_type_both_complete(
        world: World) -> None:
    await world.consumer()
    data = job_data()
    headers, body = binary_event(data)
    await world.publish(body, headers)
    event = await _one_result(world)
    assert event["id"] == f"{data['job_id']}:completed"

    other = job_data()
    await world.publish(structured_event(other))  # no headers: detected by `specversion`

    async def two() -> bool:
        return len(await world.results()) == 2
    await eventually(two, what="the second result")
    assert json.loads((await world.results())[1].data or b"")["id"] == \
        f"{other['job_id']}:completed"


async def test_failing_job_gives_one_failed_result_and_is_acked(world: World) -> None:
    await world.consumer(runtime=ScriptedRuntime(error=ModelError("provider said no")))
    data = job_data()
    await world.publish(structured_event(data))
    event = await _one_result(world, "failed")
    payload = event["data"]
    assert isinstance(payload, dict)
    assert payload["error"] == {"type": "ModelError", "message": "provider said no",
                                "retryable": False}
    assert world.metric("nats_messages_processed_total", outcome="ack") == 1


async def test_two_deliveries_of_one_job_run_it_once_and_store_one_result(
        world: World) -> None:
    runtime = ScriptedRuntime()
    runtime.gate = asyncio.Event()
    await world.consumer(runtime=runtime, max_concurrent=2)
    data = job_data()
    await world.publish(structured_event(data))
    await world.publish(structured_event(data))  # another event id: not a NATS duplicate
    # the second delivery finds the first one's lease and is nak'ed for later; wait for
    # that before the first may finish, or it could claim the finished job instead
    await eventually(lambda: world.metric("nats_messages_processed_total", outcome="nak") >= 1,
                     what="the second delivery nak'ed while the first runs")
    runtime.gate.set()

    await eventually(world.settled, what="both messages settled")
    await eventually(lambda: world.metric("nats_messages_processed_total", outcome="ack") == 2,
                     what="both acked")
    assert runtime.calls == [data["job_id"]]
    results = await world.results()
    assert len(results) == 1  # the second publish was dropped by its Nats-Msg-Id
    assert world.metric("results_published_total", status="completed") == 2


async def test_poison_messages_are_terminated_and_never_redelivered(world: World) -> None:
    consumer = await world.consumer(max_event_bytes=4096)
    readable, oversized = job_data(), job_data()
    oversized["input_payload"]["messages"][0]["content"] = "x" * 5000
    await world.publish(b"\x00 not an event at all")
    await world.publish(structured_event(readable, type="some.other.type"))
    await world.publish(json.dumps({"specversion": "1.0", "data": {"job_id": 42}}).encode(),
                        {"Content-Type": "application/cloudevents+json"})
    await world.publish(structured_event(oversized))
    await eventually(lambda: world.metric("nats_messages_processed_total", outcome="term") == 4,
                     what="four terms")
    await eventually(world.settled, what="nothing pending")

    info = await world.consumer_info()
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
    events = [json.loads(m.data or b"") for m in await world.results()]
    # a rejection per message, on its own subject; never a job's result
    rejected = f"{world.settings.status_subject_prefix}.rejected"
    assert {m.subject for m in await world.results()} == {rejected}
    assert len({e["id"] for e in events}) == 4
    assert all(e["id"].startswith("rejected:") for e in events)
    assert {e["data"]["error"]["type"] for e in events} == {"InvalidJob"}
    assert [e["data"].get("job_id") for e in events] == [
        None, readable["job_id"], None, oversized["job_id"]]
    assert "MAX_EVENT_BYTES" in events[3]["data"]["error"]["message"]
    assert world.runtime.calls == []
    assert world.metric("nats_messages_failed_total") == 4
    assert await world.ledger.get(str(readable["job_id"])) is None  # nothing recorded
    assert (await NatsReadinessProbe(world.connections[0], consumer).check()).ok


async def test_own_dependency_failure_naks_then_records_and_publishes_failed_on_last_delivery(
        nats_url: str, tmp_path: Path) -> None:
    world = await open_world(nats_url, tmp_path, max_deliver=3)
    try:
        broken = BrokenLedger(world.ledger, only=frozenset({"claim"}))
        await world.consumer(ledger=broken)  # type: ignore[arg-type]
        data = job_data()
        await world.publish(structured_event(data))
        event = await _one_result(world, "failed")
        record = await world.ledger.get(str(data["job_id"]))
        assert record is not None and record.status == "failed"  # recorded, then published
        broken.down = False
        reaper = BackgroundJobs(world.consumers[0]._execute, world.ledger)  # noqa: SLF001
        assert await reaper.reap_once() == 0  # nothing left for a reaper to run again
        payload = event["data"]
        assert isinstance(payload, dict)
        assert payload["error"]["type"] == "DependencyUnavailable"
        assert payload["error"]["retryable"] is True
        assert world.metric("nats_messages_processed_total", outcome="nak") == 2
        assert world.metric("nats_messages_processed_total", outcome="term") == 1
        assert world.metric("nats_redeliveries_total") == 2
        assert world.runtime.calls == []
        assert len(await world.results()) == 1
    finally:
        await close_world(world)


async def test_a_ledger_down_on_every_delivery_publishes_no_unrecorded_failure(
        nats_url: str, tmp_path: Path) -> None:
    world = await open_world(nats_url, tmp_path, max_deliver=2)
    try:
        broken = BrokenLedger(world.ledger)
        await world.consumer(ledger=broken, give_up_seconds=0.5)  # type: ignore[arg-type]
        await world.publish(structured_event(job_data()))
        await eventually(lambda: world.metric("nats_messages_processed_total", outcome="term")
                         == 1, what="the last delivery settled")
        assert await world.results() == []
    finally:
        await close_world(world)


async def test_fetches_only_as_many_jobs_as_free_slots(world: World) -> None:
    runtime = ScriptedRuntime()
    runtime.gate = asyncio.Event()
    await world.consumer(runtime=runtime, max_concurrent=1)
    jobs = [job_data() for _ in range(3)]
    for data in jobs:
        await world.publish(structured_event(data))
    await eventually(lambda: len(runtime.calls) == 1, what="the first job to start")

    async def one_taken() -> bool:
        info = await world.consumer_info()
        return (info.num_ack_pending, info.num_pending) == (1, 2)
    await eventually(one_taken, what="one delivered, two waiting")
    runtime.gate.set()

    async def all_done() -> bool:
        return len(await world.results()) == 3
    await eventually(all_done, what="three results")
    assert sorted(runtime.calls) == sorted(str(d["job_id"]) for d in jobs)


async def test_job_events_reach_dragonfly_in_order_ending_with_end(
        world: World, dragonfly_port: int) -> None:
    redis = Redis(host="127.0.0.1", port=dragonfly_port)
    world.events = DragonflyEventStream(redis, world.metrics)
    await world.consumer(runtime=ScriptedRuntime(tokens=("a", "b", "c")))
    data = job_data(f"job-df-{uuid.uuid4().hex[:8]}")
    listener = Redis(host="127.0.0.1", port=dragonfly_port)
    pubsub = listener.pubsub()
    await pubsub.subscribe(f"langgraph:stream:{data['job_id']}")
    try:
        await world.publish(structured_event(data))
        received: list[dict[str, object]] = []
        async with asyncio.timeout(15):
            while not received or received[-1]["event_type"] != END:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    received.append(json.loads(message["data"]))
        assert [m["seq"] for m in received] == [1, 2, 3, 4]
        assert [m["event_type"] for m in received] == [LLM_STREAM] * 3 + [END]
        await _one_result(world)
    finally:
        await pubsub.aclose()
        keys = [k async for k in listener.scan_iter(match=f"langgraph:stream:{data['job_id']}*")]
        if keys:
            await listener.delete(*keys)
        await listener.aclose()
        await world.close()
        await redis.aclose()


class BigFilesRuntime(ScriptedRuntime):
    """A run whose files (a 700 KB tool argument, say) outgrow NATS's max_payload."""

    async def run(self, job: Job, emit: EventSink, resume: object = None) -> AgentOutput:
        await super().run(job, emit)
        return AgentOutput("wrote the big file", {"/big.txt": "x" * 1_200_000},
                           [{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "wrote the big file"}])


async def test_a_result_larger_than_max_payload_is_published_truncated_not_failed(
        world: World) -> None:
    consumer = await world.consumer(runtime=BigFilesRuntime())
    assert consumer.running
    data = job_data()
    await world.publish(structured_event(data))
    event = await _one_result(world, "completed")
    payload = event["data"]
    assert isinstance(payload, dict)
    assert payload["result_truncated"] is True
    assert payload["result_url"] == f"/jobs/{data['job_id']}"
    assert payload["result"] == {"output": "wrote the big file"}
    record = await world.ledger.get(str(data["job_id"]))
    assert record is not None and record.result is not None and record.result.output
    assert len(record.result.output.files["/big.txt"]) == 1_200_000  # whole in the ledger
    assert world.metric("nats_messages_processed_total", outcome="ack") == 1


async def test_an_idle_fetch_holds_no_slot_that_an_http_job_needs(world: World) -> None:
    """With one slot and nothing on the subject the consumer waits in a pull; an HTTP
    job (which takes its slot from the same capacity) must get that slot now, not
    after the pull's timeout; a NATS job still runs afterwards."""
    runtime = ScriptedRuntime()
    consumer = await world.consumer(runtime=runtime, max_concurrent=1)
    capacity = consumer._execute.capacity  # noqa: SLF001

    async def pulling() -> bool:
        return (await world.consumer_info()).num_waiting >= 1
    await eventually(pulling, what="the consumer's pull request to be waiting")
    assert capacity.free == 1
    slot = capacity.reserve()
    assert slot is not None
    slot.release()
    await world.publish(structured_event(job_data()))
    await _one_result(world)
