"""`NatsJobConsumer`: jobs from the durable pull consumer that every replica shares.

- Fetches only while a slot of `ExecuteJob`'s capacity is free, one message per
  pull, so a message does not wait in this process while another replica could
  run it; a freed slot wakes the loop. The slot is taken when a message arrives,
  not held through the pull's wait, which would keep it from an HTTP job.
- Each message runs as its own task in `DeliveryHandler` (decode, decide,
  settle): claim, run (or resume), the result published by `ExecuteJob` before
  the message is acked, in-progress acks while it runs, `settlement.settle`
  for what did not end with a result.
- A lost connection is reconnected by `NatsConnection`; the fetch loop keeps
  going and re-binds (re-creating the consumer in the `local` profile) when
  the consumer cannot be found.
- `stop` (SIGTERM): no new fetches, in-flight jobs get `grace_seconds` to
  finish, the rest are cancelled (their leases released) and nak'ed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import nats
from nats.aio.msg import Msg
from nats.js.api import ConsumerInfo
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from agent_executor.adapters.cloudevents_codec import EventNames
from agent_executor.adapters.config import NATS_STATUS_STREAM_NAME, NatsSettings
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.adapters.nats.connection import NatsConnection
from agent_executor.adapters.nats.delivery import NatsDelivery, nats_errors
from agent_executor.adapters.nats.handler import DeliveryHandler
from agent_executor.adapters.nats.publisher import NatsResultPublisher
from agent_executor.adapters.nats.settlement import RetryPolicy
from agent_executor.adapters.nats.streams import ensure_local_streams
from agent_executor.domain.capacity import Slot
from agent_executor.domain.errors import DependencyUnavailable
from agent_executor.domain.execute import ExecuteJob

logger = logging.getLogger(__name__)


class NatsJobConsumer:
    """Runs jobs from NATS through `ExecuteJob`; see the module docstring."""

    def __init__(self, connection: NatsConnection, execute: ExecuteJob, settings: NatsSettings,
                 names: EventNames, metrics: PrometheusMetrics, *, grace_seconds: float,
                 create_streams: bool = False, status_stream: str = NATS_STATUS_STREAM_NAME,
                 publisher: NatsResultPublisher | None = None,
                 retry: RetryPolicy | None = None, max_event_bytes: int | None = None,
                 fetch_timeout_seconds: float = 2.0,
                 progress_interval_seconds: float | None = None,
                 consumer_check_seconds: float = 10.0,
                 give_up_seconds: float = 60.0) -> None:
        self._connection = connection
        self._execute = execute
        self._settings = settings
        self._metrics = metrics
        self._grace = grace_seconds
        self._create_streams = create_streams
        self._status_stream = status_stream
        rejections = publisher or NatsResultPublisher(connection, settings, names, metrics)
        self._fetch_timeout = fetch_timeout_seconds
        self._fixed_progress_interval = progress_interval_seconds
        self._handler = DeliveryHandler(
            execute, names, metrics, rejections, max_deliver=settings.max_deliver,
            progress_interval_seconds=progress_interval_seconds
            or settings.ack_wait_seconds / 3,
            retry=retry, max_event_bytes=max_event_bytes, give_up_seconds=give_up_seconds)
        self._check_interval = consumer_check_seconds
        self._sub: JetStreamContext.PullSubscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._checked_at = 0.0

    @property
    def running(self) -> bool:
        """The fetch loop is alive (started and neither stopped nor crashed)."""
        return self._loop is not None and not self._loop.done()

    @property
    def max_deliver(self) -> int:
        """Deliveries the bound consumer allows (-1: unlimited)."""
        return self._handler.max_deliver

    @property
    def progress_interval(self) -> float:
        """Seconds between in-progress acks of a running job's message."""
        return self._handler.progress_interval

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        """Bind to the consumer (creating streams and consumer first in the `local`
        profile) and start fetching. A failing bind is retried by the loop."""
        if self._loop is not None:
            return
        try:
            await self._bind()
        except Exception as exc:  # NATS or JetStream errors: the loop binds again
            logger.warning("NATS consumer not bound yet (%s); retrying", exc)
        self._loop = asyncio.create_task(self._fetch_forever(), name="nats-fetch-loop")

    async def stop(self) -> None:
        """Stop fetching, let in-flight jobs finish within the grace period, nak the rest."""
        if self._loop is None:
            return
        self._stopping.set()
        await asyncio.wait({self._loop}, timeout=self._fetch_timeout + 2)
        self._loop.cancel()
        with contextlib.suppress(BaseException):
            await self._loop
        if self._tasks:
            logger.info("waiting up to %gs for %d NATS job(s) in flight", self._grace,
                        len(self._tasks))
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._sub is not None:
            with contextlib.suppress(DependencyUnavailable), nats_errors("unsubscribe"):
                await self._sub.unsubscribe()
            self._sub = None
        logger.info("NATS consumer stopped")

    async def consumer_info(self) -> ConsumerInfo:
        """The durable consumer as the server sees it; `DependencyUnavailable` if it cannot."""
        try:
            with nats_errors("consumer info"):
                info: ConsumerInfo = await self._js.consumer_info(
                    self._settings.stream_name, self._settings.consumer_group)
        except DependencyUnavailable as exc:
            if isinstance(exc.__cause__, NotFoundError):
                raise DependencyUnavailable(
                    f"consumer {self._settings.consumer_group} not found on stream "
                    f"{self._settings.stream_name}") from exc.__cause__
            raise
        self._checked_at = time.monotonic()
        return info

    @property
    def _js(self) -> JetStreamContext:
        return self._connection.js

    async def _bind(self) -> None:
        if self._create_streams:
            await ensure_local_streams(self._js, self._settings,
                                       status_stream=self._status_stream)
        info = await self.consumer_info()  # production: the consumer must exist
        self._adopt(info)
        old, self._sub = self._sub, None
        if old is not None:
            with contextlib.suppress(DependencyUnavailable), nats_errors("unsubscribe"):
                await old.unsubscribe()
        self._sub = await self._js.pull_subscribe_bind(durable=self._settings.consumer_group,
                                                       stream=self._settings.stream_name)
        logger.info("consuming jobs from %s (consumer %s)", self._settings.stream_name,
                    self._settings.consumer_group)

    def _adopt(self, info: ConsumerInfo) -> None:
        """Follow the consumer as deployed: its ack wait paces the in-progress acks and
        its max deliver decides the last delivery, whatever the defaults say."""
        ack_wait, max_deliver = info.config.ack_wait, info.config.max_deliver
        if ack_wait and self._fixed_progress_interval is None:
            self._handler.progress_interval = float(ack_wait) / 3
        if max_deliver is not None:
            self._handler.max_deliver = max_deliver

    async def _fetch_forever(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._sub is None:
                    await self._bind()
                elif time.monotonic() - self._checked_at > self._check_interval:
                    await self.consumer_info()  # still there (e.g. after a server restart)?
                # Fetch only with a slot free, but do not hold it while the fetch waits
                # (up to `fetch_timeout`): an HTTP job would wait that long for it. A job
                # that took the slot meanwhile leaves the fetched message to wait for the
                # next one (in-progress acks keep it), which only that race can cause.
                if self._execute.capacity.free <= 0:
                    await self._wait_for_slot()
                    continue
                assert self._sub is not None
                try:
                    messages = await self._sub.fetch(1, timeout=self._fetch_timeout)
                except nats.errors.TimeoutError:
                    messages = []
                if failures:
                    logger.info("NATS fetching works again after %d failure(s)", failures)
                failures = 0
                for msg in messages:
                    if self._stopping.is_set():
                        with contextlib.suppress(DependencyUnavailable):
                            await NatsDelivery(msg).nak(None)
                    else:
                        self._dispatch(msg, self._execute.capacity.reserve())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    logger.warning("NATS fetch failed (%d in a row): %s: %s", failures,
                                   type(exc).__name__, exc)
                self._sub = None  # bind again (re-creating the consumer in `local`)
                await self._pause(min(5.0, 0.25 * failures))

    async def _wait_for_slot(self) -> None:
        """Until a slot is free or the consumer stops (a freed slot wakes it at once)."""
        waits = {asyncio.ensure_future(self._execute.capacity.wait_free()),
                 asyncio.ensure_future(self._stopping.wait())}
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _dispatch(self, msg: Msg, slot: Slot | None) -> None:
        task = asyncio.create_task(self._handler.handle(NatsDelivery(msg), slot),
                                   name="nats-job")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
