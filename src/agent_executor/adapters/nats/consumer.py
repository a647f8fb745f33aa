"""`NatsJobConsumer`: jobs from the durable pull consumer that every replica shares.

- Fetches only while `ExecuteJob` has a free slot, one message per pull, so a
  message never waits in this process while another replica could run it.
- Each message runs as its own task: claim, run (or resume), and the result
  is published by `ExecuteJob` before the message is acked. While it runs,
  `in_progress` acks keep it from being redelivered.
- What did not end with a result is settled by `settlement.settle` (nak with a
  growing delay, `failed` result on the last delivery, term for non-jobs).
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
from agent_executor.adapters.nats.codec import job_identity, read_nats_job
from agent_executor.adapters.nats.connection import NatsConnection
from agent_executor.adapters.nats.publisher import NatsResultPublisher
from agent_executor.adapters.nats.settlement import RetryPolicy, Settlement, settle
from agent_executor.adapters.nats.streams import ensure_local_streams
from agent_executor.domain.errors import DependencyUnavailable, InvalidJob, JobConflict
from agent_executor.domain.execute import ExecuteJob
from agent_executor.domain.job import Job
from agent_executor.domain.result import JobResult
from agent_executor.ports.publisher import ResultPublisher

logger = logging.getLogger(__name__)

SOURCE = "nats"
NATS_ERRORS: tuple[type[BaseException], ...] = (nats.errors.Error, OSError, TimeoutError)
# With every slot taken the loop waits for one of its jobs to end; slots held by HTTP
# jobs free without telling it, so it also looks again after this long.
SLOT_POLL_SECONDS = 0.05


class NatsJobConsumer:
    """Runs jobs from NATS through `ExecuteJob`; see the module docstring."""

    def __init__(self, connection: NatsConnection, execute: ExecuteJob, settings: NatsSettings,
                 names: EventNames, metrics: PrometheusMetrics, *, grace_seconds: float,
                 create_streams: bool = False, status_stream: str = NATS_STATUS_STREAM_NAME,
                 publisher: ResultPublisher | None = None, retry: RetryPolicy | None = None,
                 max_event_bytes: int | None = None, fetch_timeout_seconds: float = 2.0,
                 progress_interval_seconds: float | None = None,
                 consumer_check_seconds: float = 10.0) -> None:
        self._connection = connection
        self._execute = execute
        self._settings = settings
        self._names = names
        self._metrics = metrics
        self._grace = grace_seconds
        self._create_streams = create_streams
        self._status_stream = status_stream
        self._publisher = publisher or NatsResultPublisher(connection, settings, names, metrics)
        self._retry = retry or RetryPolicy()
        self._max_event_bytes = max_event_bytes
        self._fetch_timeout = fetch_timeout_seconds
        self._fixed_progress_interval = progress_interval_seconds
        self._progress_interval = progress_interval_seconds or settings.ack_wait_seconds / 3
        self._max_deliver = settings.max_deliver
        self._check_interval = consumer_check_seconds
        self._sub: JetStreamContext.PullSubscription | None = None
        self._loop: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._claiming = 0  # messages taken whose job has no slot yet
        self._checked_at = 0.0

    @property
    def running(self) -> bool:
        """The fetch loop is alive (started and neither stopped nor crashed)."""
        return self._loop is not None and not self._loop.done()

    @property
    def max_deliver(self) -> int:
        """Deliveries the bound consumer allows (-1: unlimited)."""
        return self._max_deliver

    @property
    def progress_interval(self) -> float:
        """Seconds between in-progress acks of a running job's message."""
        return self._progress_interval

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
            with contextlib.suppress(*NATS_ERRORS):
                await self._sub.unsubscribe()
            self._sub = None
        logger.info("NATS consumer stopped")

    async def consumer_info(self) -> ConsumerInfo:
        """The durable consumer as the server sees it; `DependencyUnavailable` if it cannot."""
        try:
            info: ConsumerInfo = await self._js.consumer_info(self._settings.stream_name,
                                                              self._settings.consumer_group)
        except NotFoundError as exc:
            raise DependencyUnavailable(
                f"consumer {self._settings.consumer_group} not found on stream "
                f"{self._settings.stream_name}") from exc
        except NATS_ERRORS as exc:
            raise DependencyUnavailable(f"NATS: {type(exc).__name__}: {exc}") from exc
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
            with contextlib.suppress(*NATS_ERRORS):
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
            self._progress_interval = float(ack_wait) / 3
        if max_deliver is not None:
            self._max_deliver = max_deliver

    async def _fetch_forever(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._sub is None:
                    await self._bind()
                elif time.monotonic() - self._checked_at > self._check_interval:
                    await self.consumer_info()  # still there (e.g. after a server restart)?
                if self._free_slots() <= 0:
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
                        await _settle(msg, Settlement("nak", outcome="shutting down"),
                                      self._metrics)
                    else:
                        self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    logger.warning("NATS fetch failed (%d in a row): %s: %s", failures,
                                   type(exc).__name__, exc)
                self._sub = None  # bind again (re-creating the consumer in `local`)
                await self._pause(min(5.0, 0.25 * failures))

    def _free_slots(self) -> int:
        return self._execute.free_slots - self._claiming

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_freed.wait(), SLOT_POLL_SECONDS)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _dispatch(self, msg: Msg) -> None:
        self._claiming += 1
        task = asyncio.create_task(self._handle(msg), name="nats-job")
        self._tasks.add(task)
        task.add_done_callback(self._job_done)

    async def _handle(self, msg: Msg) -> None:
        delivered = msg.metadata.num_delivered
        self._metrics.nats_messages_received_total.inc()
        if delivered > 1:
            self._metrics.nats_redeliveries_total.inc()
        keepalive = asyncio.create_task(self._keep_in_progress(msg))
        claiming = True
        job: Job | None = None
        try:
            try:
                job = self._read(msg)
                record = await self._execute.claim(job, SOURCE)
                claiming = False
                self._claiming -= 1
                if record.result is None:
                    await self._execute.run_claimed(job, record)
                await _settle(msg, Settlement("ack"), self._metrics)
            except asyncio.CancelledError:  # stop() after the grace period
                with contextlib.suppress(BaseException):
                    await _settle(msg, Settlement("nak", outcome="shutdown"), self._metrics)
                raise
            except Exception as exc:
                await self._settle_error(msg, exc, delivered, job)
        finally:
            if claiming:
                self._claiming -= 1
            keepalive.cancel()

    def _read(self, msg: Msg) -> Job:
        if self._max_event_bytes is not None and len(msg.data) > self._max_event_bytes:
            raise InvalidJob(f"event larger than MAX_EVENT_BYTES ({self._max_event_bytes})",
                             [f"body: {len(msg.data)} bytes"])
        return read_nats_job(msg.headers, msg.data, self._names)

    async def _settle_error(self, msg: Msg, exc: Exception, delivered: int,
                            job: Job | None) -> None:
        decision = settle(exc, delivered, self._max_deliver, self._retry)
        identity = (job.job_id, job.trace_id) if job else job_identity(msg.headers, msg.data)
        log = {"job_id": identity[0], "trace_id": identity[1]} if identity else {}
        self._metrics.nats_messages_failed_total.inc()
        if isinstance(exc, InvalidJob):
            logger.warning("NATS message on %s is not a valid job: %s", msg.subject,
                           exc.message, extra=log)
        elif isinstance(exc, JobConflict):
            logger.info("job is running elsewhere (delivery %d)", delivered, extra=log)
        elif isinstance(exc, DependencyUnavailable):
            logger.warning("job not finished, %s (delivery %d of %d): %s", decision.outcome,
                           delivered, self._max_deliver, exc, extra=log)
        else:
            logger.error("job handling failed, %s (delivery %d)", decision.outcome, delivered,
                         exc_info=exc, extra=log)
        if decision.failed is not None and identity is not None:
            result = JobResult.failed(identity[0], identity[1], delivered, decision.failed)
            try:
                await self._publisher.publish(result)
            except DependencyUnavailable as publish_error:
                logger.error("could not publish the failed result: %s", publish_error,
                             extra=log)
        await _settle(msg, decision, self._metrics)

    async def _keep_in_progress(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._progress_interval)
            try:
                await msg.in_progress()
            except NATS_ERRORS as exc:
                logger.debug("in-progress ack failed: %s", exc)


async def _settle(msg: Msg, decision: Settlement, metrics: PrometheusMetrics) -> None:
    try:
        if decision.action == "ack":
            await msg.ack()
        elif decision.action == "nak":
            await msg.nak(delay=decision.delay)
        else:
            await msg.term()
    except NATS_ERRORS as exc:  # the server redelivers after ack_wait
        logger.warning("could not %s a NATS message: %s", decision.action, exc)
        return
    metrics.nats_messages_processed_total.labels(outcome=decision.action).inc()
