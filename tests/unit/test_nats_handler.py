"""`DeliveryHandler` driven in memory: a fake delivery records how it was settled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.nats.handler import DeliveryHandler
from agent_executor.adapters.nats.settlement import RetryPolicy
from agent_executor.domain.background import BackgroundJobs
from agent_executor.domain.errors import DependencyUnavailable, InvalidJob
from tests.unit.conftest import World, job_data, make_job

NAMES = EventNames()


class FakeDelivery:
    """A delivered message; `settled` holds what the handler did with it."""

    def __init__(self, data: Mapping[str, Any] | bytes, num_delivered: int = 1,
                 headers: Mapping[str, str] | None = None) -> None:
        if isinstance(data, bytes):
            self.data = data
        else:
            self.data = json.dumps({"specversion": "1.0", "id": "m1", "source": "test",
                                    "type": NAMES.execute_type,
                                    "datacontenttype": "application/json",
                                    "data": data}).encode()
        self.headers = headers or {"Content-Type": "application/cloudevents+json"}
        self.subject = "agent.execute.test"
        self.num_delivered = num_delivered
        self.message_id = "AGENT_EXECUTION:7"
        self.settled: list[tuple[str, float | None]] = []
        self.in_progress_acks = 0

    async def ack(self) -> None:
        self.settled.append(("ack", None))

    async def nak(self, delay: float | None) -> None:
        self.settled.append(("nak", delay))

    async def term(self) -> None:
        self.settled.append(("term", None))

    async def in_progress(self) -> None:
        self.in_progress_acks += 1


class FakeRejections:
    def __init__(self) -> None:
        self.rejected: list[tuple[str, str, str | None]] = []
        self.down = False

    async def publish_rejection(self, event_id: str, error: InvalidJob,
                                job_id: str | None) -> None:
        if self.down:
            raise DependencyUnavailable("bus down")
        self.rejected.append((event_id, error.message, job_id))


def handler(world: World, rejections: FakeRejections | None = None, *,
            give_up_seconds: float = 0.0) -> DeliveryHandler:
    return DeliveryHandler(world.execute, NAMES, PrometheusMetrics(),
                           rejections or FakeRejections(), max_deliver=5,
                           progress_interval_seconds=0.01,
                           retry=RetryPolicy(base_seconds=1, factor=2, cap_seconds=8),
                           give_up_seconds=give_up_seconds)


async def test_a_job_is_run_its_result_published_then_acked(world: World) -> None:
    delivery = FakeDelivery(job_data())
    await handler(world).handle(delivery)
    assert [r.status for r in world.publisher.published] == ["completed"]
    assert delivery.settled == [("ack", None)]
    assert world.execute.free_slots == 2


async def test_in_progress_acks_while_the_job_runs(world: World) -> None:
    world.runtime.gate = asyncio.Event()
    delivery = FakeDelivery(job_data())
    task = asyncio.create_task(handler(world).handle(delivery))
    await world.runtime.started.wait()
    while delivery.in_progress_acks < 2:
        await asyncio.sleep(0.005)
    assert delivery.settled == []
    world.runtime.gate.set()
    await task
    assert delivery.settled == [("ack", None)]


async def test_an_unreadable_message_is_rejected_never_failed(world: World) -> None:
    """A forged 'job' without a definition cannot put a failure on the victim's id."""
    rejections = FakeRejections()
    delivery = FakeDelivery({"job_id": "victim", "trace_id": "x"})
    await handler(world, rejections).handle(delivery)
    assert delivery.settled == [("term", None)]
    assert world.publisher.published == []
    assert "victim" not in world.ledger.records
    assert [(r[0], r[2]) for r in rejections.rejected] == [
        ("rejected:AGENT_EXECUTION:7", "victim")]


async def test_a_rejection_the_bus_refuses_is_retried(world: World) -> None:
    rejections = FakeRejections()
    rejections.down = True
    delivery = FakeDelivery(b"not json", num_delivered=2)
    await handler(world, rejections).handle(delivery)
    assert delivery.settled == [("nak", 2.0)]


async def test_dependency_failures_are_nakked_until_the_last_delivery_gives_up(
        world: World) -> None:
    world.ledger.down = True
    early = FakeDelivery(job_data(), num_delivered=1)
    await handler(world).handle(early)
    assert early.settled == [("nak", 1.0)]

    world.ledger.down = False
    world.publisher.down = True  # the run's result cannot be published
    last = FakeDelivery(job_data(), num_delivered=5)
    await handler(world).handle(last)
    # recorded completed before the bus failed: giving up keeps that one result
    assert world.ledger.records["job-1"].status == "completed"
    assert last.settled == [("term", None)]
    world.publisher.down = False
    await BackgroundJobs(world.execute, world.ledger, publish_after_seconds=0).reap_once()
    assert [r.status for r in world.publisher.published] == ["completed"]


async def test_giving_up_while_the_ledger_flaps_retries_then_publishes_one_failure(
        world: World) -> None:
    world.ledger.down = True
    delivery = FakeDelivery(job_data(), num_delivered=5)
    task = asyncio.create_task(handler(world, give_up_seconds=30).handle(delivery))
    await asyncio.sleep(0.05)
    assert world.publisher.published == []
    world.ledger.down = False  # back within the give-up window
    await asyncio.wait_for(task, 10)
    assert delivery.settled == [("term", None)]
    assert [r.status for r in world.publisher.published] == ["failed"]
    assert world.ledger.records["job-1"].status == "failed"
    assert await BackgroundJobs(world.execute, world.ledger).reap_once() == 0


async def test_giving_up_with_the_ledger_down_for_good_publishes_nothing(world: World) -> None:
    world.ledger.down = True
    delivery = FakeDelivery(job_data(), num_delivered=5)
    await handler(world, give_up_seconds=0).handle(delivery)
    assert delivery.settled == [("term", None)]
    assert world.publisher.published == []


@pytest.mark.parametrize("delivered", [1, 5])
async def test_a_finished_job_is_acked_with_its_result_again(world: World,
                                                             delivered: int) -> None:
    first = await world.execute.execute(make_job(), "nats")
    delivery = FakeDelivery(job_data(), num_delivered=delivered)
    await handler(world).handle(delivery)
    assert world.publisher.published == [first, first]
    assert delivery.settled == [("ack", None)]



async def test_a_job_id_resent_with_another_input_is_terminated_without_a_result(
        world: World) -> None:
    first = await world.execute.execute(make_job(), "nats")
    changed = job_data(input_payload={"messages": [{"role": "user", "content": "fixed typo"}]})
    delivery = FakeDelivery(changed)
    await handler(world).handle(delivery)
    assert delivery.settled == [("term", None)]
    assert world.publisher.published == [first]


def cancel_event(data: Any) -> bytes:
    return json.dumps({"specversion": "1.0", "id": "c1", "source": "test",
                       "type": "dev.my-platform.agent.cancel",
                       "datacontenttype": "application/json", "data": data}).encode()


async def test_a_cancel_event_cancels_a_running_job_and_is_acked(world: World) -> None:
    world.runtime.gate = asyncio.Event()
    job = FakeDelivery(job_data())
    running = asyncio.create_task(handler(world).handle(job))
    await world.runtime.started.wait()
    cancel = FakeDelivery(cancel_event({"job_id": "job-1", "reason": "stop it"}))
    await handler(world).handle(cancel)
    assert cancel.settled == [("ack", None)]
    await asyncio.wait_for(running, 5)
    assert job.settled == [("ack", None)]
    assert [(r.status, r.reason) for r in world.publisher.published] == [
        ("cancelled", "stop it")]


async def test_a_cancel_before_its_job_is_kept_and_the_job_never_runs(world: World) -> None:
    cancel = FakeDelivery(cancel_event({"job_id": "job-1"}))
    await handler(world).handle(cancel)
    assert cancel.settled == [("ack", None)]
    job = FakeDelivery(job_data())
    await handler(world).handle(job)
    assert job.settled == [("ack", None)] and world.runtime.calls == []
    assert {r.event_id for r in world.publisher.published} == {"job-1:cancelled"}


async def test_a_malformed_cancel_is_rejected_and_terminated(world: World) -> None:
    rejections = FakeRejections()
    cancel = FakeDelivery(cancel_event({"reason": "no job id"}))
    await handler(world, rejections).handle(cancel)
    assert cancel.settled == [("term", None)]
    assert "data.job_id: required" in rejections.rejected[0][1]
    late = FakeDelivery(cancel_event({"job_id": "done"}))
    await world.execute.execute(make_job("done"), "nats")
    await handler(world, rejections).handle(late)  # finished: nothing to do, acked
    assert late.settled == [("ack", None)]


def steering_event(kind: str, data: Any) -> bytes:
    return json.dumps({"specversion": "1.0", "id": f"{kind}-1", "source": "test",
                       "type": f"dev.my-platform.agent.{kind}",
                       "datacontenttype": "application/json", "data": data}).encode()


async def test_an_interrupted_job_is_acked_and_resumed_by_a_resume_event(world: World) -> None:
    from tests.unit.test_interrupt_and_retry import PAUSE
    world.runtime.pauses = [PAUSE]
    job = FakeDelivery(job_data())
    await handler(world).handle(job)
    assert job.settled == [("ack", None)]  # the message is done with; the job waits
    assert [r.event_id for r in world.publisher.published] == ["job-1:interrupted:1"]

    rejections = FakeRejections()
    wrong = FakeDelivery(steering_event("resume", {"job_id": "job-1", "interrupt_id": "x",
                                                   "decisions": [{"type": "approve"}]}))
    await handler(world, rejections).handle(wrong)
    assert wrong.settled == [("term", None)] and "waits on interrupt int-1" in \
        rejections.rejected[0][1]
    bad = FakeDelivery(steering_event("resume", {"job_id": "job-1", "interrupt_id": "int-1",
                                                 "decisions": []}))
    await handler(world, rejections).handle(bad)
    assert bad.settled == [("term", None)]

    resume = FakeDelivery(steering_event("resume", {
        "job_id": "job-1", "interrupt_id": "int-1", "decisions": [{"type": "approve"}]}))
    await handler(world).handle(resume)
    assert resume.settled == [("ack", None)] and world.execute.woken.is_set()
    assert world.ledger.records["job-1"].status == "pending"


async def test_a_retry_event_starts_the_next_run(world: World) -> None:
    from agent_executor.domain.errors import ToolError
    world.runtime.error = ToolError("down")
    await handler(world).handle(FakeDelivery(job_data()))
    world.runtime.error = None
    retry = FakeDelivery(steering_event("retry", {"job_id": "job-1"}))
    await handler(world).handle(retry)
    assert retry.settled == [("ack", None)]
    assert (world.ledger.records["job-1"].status, world.ledger.records["job-1"].run) == (
        "pending", 2)
    rejections = FakeRejections()
    unknown = FakeDelivery(steering_event("retry", {"job_id": "nope"}))
    await handler(world, rejections).handle(unknown)
    assert unknown.settled == [("term", None)] and "nope" in rejections.rejected[0][1]
