"""The site agent's loop: one stream to the broker, kept open for as long as the agent runs.

Per connection: Hello, wait for Welcome, then an InventoryReport at once and every
`heartbeat_s`, launches and cancels as the broker asks, a WorkloadUpdate for each
backend change. Across connections (and restarts) it keeps what makes the
protocol safe to repeat: report `seq` only grows, an attempt is launched once
whatever the broker re-sends, and every attempt it knows (terminal ones for a
retention window) is in each snapshot, so nothing lost with a stream stays lost.

Launches and cancels run as one task per attempt, chained in arrival order, so a
slow backend call (a Ray submit, a Kubernetes create) never holds up the stream,
the heartbeats or another attempt, and a cancel still lands after its launch.

A wrong or foreign token (UNAUTHENTICATED, PERMISSION_DENIED) raises
`AgentRefused`: retrying the same credential forever helps no one. Anything else
that ends a stream (UNAVAILABLE, a broker restart, a closed stream) means reconnect
after a jittered, capped, growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import metadata
from typing import Any

import grpc
from fedbroker.v1 import agent_service_pb2 as pb
from fedbroker.v1 import agent_service_pb2_grpc
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from broker import batching, telemetry
from broker import tls as tls_setup
from broker.api.limits import CHANNEL_OPTIONS
from broker.errors import STANDBY_METADATA
from broker.sdk.settings import TlsFiles
from site_agents import messages
from site_agents.attempts import DEFAULT_RETENTION_S, AttemptTable
from site_agents.backends.base import AttemptKey, AttemptStatus, Backend, Reason, State
from site_agents.backoff import Backoff
from site_agents.config import AgentConfig
from site_agents.errors import AgentRefused, BackendError
from site_agents.logs import LogSender

log = logging.getLogger("fedbroker.agent")

# Codes that mean "this credential will never be accepted": stop instead of retrying.
FATAL_CODES = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})

Outbox = asyncio.Queue[pb.AgentMessage | None]
# An agent's messages wait this long for company: a thousand attempts starting at once reach
# the broker as a few batches, not thousands of stream messages (each costs it ~0.1 ms).
LINGER_S = 0.005
STANDBY_RETRY_S = 0.5  # between rounds of endpoints while a standby says it is one
STOP_GRACE_S = 1.0  # how long a stopping agent waits for the broker to end the stream it half-closed


def _version() -> str:
    try:
        return metadata.version("fedbroker")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        token: str,
        backend: Backend,
        *,
        agent_id: str | None = None,
        retention_s: float = DEFAULT_RETENTION_S,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backend = backend
        self._site = config.site  # read by every log line about an attempt
        self.agent_id = agent_id or f"{socket.gethostname()}-{os.getpid()}"
        self._token = token
        self._attempts = AttemptTable(retention_s, clock)
        self._backoff = backoff or Backoff()
        # Microseconds since the epoch, then +1 per report: above anything an earlier run of this agent sent.
        self._seq = time.time_ns() // 1000
        self._outbox: Outbox | None = None  # the open stream's, None while disconnected
        self._stopping = asyncio.Event()
        self._work: dict[AttemptKey, asyncio.Task[None]] = {}  # each attempt's latest launch or cancel
        self._logs = LogSender(backend)  # answers the broker's FetchLogs, a task per request
        self._endpoints = config.brokers
        self._at = 0  # the endpoint tried now
        self._unanswered = 0  # endpoints in a row that did not welcome us
        self._epoch = 0  # the highest lease epoch a broker has welcomed us with
        self._standby_seen = False  # a broker on standby answered in this round: a takeover is near

    def stop(self) -> None:
        """End run() cleanly: close the stream, return. Workloads keep running in their backend."""
        self._stopping.set()

    @property
    def connected(self) -> bool:
        """Whether a stream to the broker is open and welcomed (read by the agent's metrics)."""
        return self._outbox is not None

    def attempts(self) -> list[AttemptStatus]:
        """Every attempt the agent knows now (read by the agent's metrics)."""
        return self._attempts.statuses()

    async def run(self) -> None:
        """Serve the broker until stop(); raises AgentRefused when the broker refuses the credential."""
        follower = asyncio.create_task(self._follow_backend(), name="agent backend changes")
        stopping = asyncio.create_task(self._stopping.wait(), name="agent stop")
        try:
            while True:
                session = asyncio.create_task(self._session(), name="agent session")
                done, _ = await asyncio.wait(
                    {session, stopping, follower}, return_when=asyncio.FIRST_COMPLETED
                )
                if session not in done:
                    await self._end_session(session, graceful=stopping in done)
                if follower in done:
                    follower.result()  # raises what broke it
                    raise RuntimeError("the backend stopped reporting changes")
                if stopping in done:
                    log.info("agent stopped")
                    return
                welcomed = False
                try:
                    welcomed = session.result()
                except AgentRefused:
                    raise
                except Exception:  # a bug or a surprise should not end a site's agent; reconnect
                    log.exception("agent session failed")
                # Next endpoint: after a failover the active broker may be another one. Each is
                # tried at once; a whole round that welcomed nobody waits out the backoff.
                self._unanswered = 0 if welcomed else self._unanswered + 1
                self._at = (self._at + 1) % len(self._endpoints)
                if 0 < self._unanswered < len(self._endpoints):
                    continue
                self._unanswered = 0
                # A standby that answered takes over within its lease: retry soon, not later and later.
                delay = STANDBY_RETRY_S if self._standby_seen else self._backoff.next_delay()
                self._standby_seen = False
                log.info(
                    "reconnecting to broker %s in %.2fs (attempt %d)",
                    self._endpoint,
                    delay,
                    self._backoff.failures,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stopping), delay)
                    log.info("agent stopped")
                    return
        finally:
            for task in (follower, stopping, *self._work.values()):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _end_session(self, session: asyncio.Task[bool], graceful: bool) -> None:
        """Stop the session; when graceful, half-close first so the broker sees a clean end of stream."""
        if graceful and self._outbox is not None:
            self._outbox.put_nowait(None)
            await asyncio.wait({session}, timeout=STOP_GRACE_S)
        session.cancel()
        with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError, AgentRefused):
            await session

    @property
    def _endpoint(self) -> str:
        return self._endpoints[self._at]

    async def _session(self) -> bool:
        """One stream, from Hello until it ends. Returns (whether the broker welcomed us) to
        reconnect; raises AgentRefused to stop."""
        outbox: Outbox = asyncio.Queue()
        endpoint = self._endpoint
        welcomed = False

        # Hello goes through the outbox like the rest: yielded straight from the generator, it
        # raced a broker's early refusal inside gRPC ("Internal error from Core").
        outbox.put_nowait(messages.hello(self.config.site, self.agent_id, self.backend.backends, _version()))

        async def requests() -> AsyncIterator[pb.AgentMessage]:
            hello = await outbox.get()
            if hello is None:
                return
            yield hello  # alone: the broker reads it first, before any batch
            batched: AsyncIterator[list[pb.AgentMessage]] = batching.batches(outbox, linger_s=LINGER_S)
            async for batch in batched:
                yield batch[0] if len(batch) == 1 else pb.AgentMessage(batch=pb.AgentBatch(messages=batch))

        log.info("connecting to broker %s as %s (site %s)", endpoint, self.agent_id, self.config.site)
        heartbeat: asyncio.Task[None] | None = None
        # A fresh channel per session: gRPC's own reconnect backoff would otherwise stack on ours.
        async with broker_channel(endpoint, self.config.tls) as channel:
            call = agent_service_pb2_grpc.AgentServiceStub(channel).Connect(
                requests(), metadata=(("authorization", f"Bearer {self._token}"),)
            )
            try:
                first = await call.read()
                if first is grpc.aio.EOF or first.WhichOneof("kind") != "welcome":
                    log.warning("broker %s did not answer Hello with Welcome; reconnecting", endpoint)
                    return False
                if not self._welcomed(first.welcome, endpoint):
                    return False
                welcomed = True
                self._outbox = outbox
                heartbeat = asyncio.create_task(self._heartbeat(outbox), name="agent heartbeat")
                while (message := await call.read()) is not grpc.aio.EOF:
                    await self._handle(message)
                if self._stopping.is_set():
                    log.info("stream to broker %s closed", endpoint)
                else:
                    log.warning("broker %s closed the stream", endpoint)
            except grpc.aio.AioRpcError as error:
                if error.code() in FATAL_CODES:
                    raise AgentRefused(error.code().name, error.details() or "") from None
                if STANDBY_METADATA in tuple(error.trailing_metadata() or ()):
                    self._standby_seen = True
                log.warning("stream to broker %s lost: %s: %s", endpoint, error.code().name, error.details())
            finally:
                self._outbox = None
                self._logs.stop_all()  # their reader was on this stream
                if heartbeat is not None:
                    heartbeat.cancel()
                outbox.put_nowait(None)
                call.cancel()
        return welcomed

    def _welcomed(self, welcome: pb.Welcome, endpoint: str) -> bool:
        """Accept the Welcome, unless it comes from a broker of an older lease epoch."""
        if welcome.epoch < self._epoch:
            log.warning(
                "broker %s (%s) speaks for lease epoch %d, older than %d: it lost the lease; trying another",
                welcome.broker_id,
                endpoint,
                welcome.epoch,
                self._epoch,
            )
            return False
        self._epoch = welcome.epoch
        self._backoff.reset()
        log.info(
            "connected to broker %s (%s, epoch %d) as site %s; reporting every %gs",
            welcome.broker_id,
            endpoint,
            welcome.epoch,
            self.config.site,
            self.config.heartbeat_s,
        )
        if welcome.heartbeat_ttl_s and self.config.heartbeat_s >= welcome.heartbeat_ttl_s:
            log.warning(
                "heartbeat_s %g is not below the broker's heartbeat TTL %gs: the site will look unhealthy",
                self.config.heartbeat_s,
                welcome.heartbeat_ttl_s,
            )
        return True

    async def _heartbeat(self, outbox: Outbox) -> None:
        """A full snapshot at once (the broker's resync point), then one every heartbeat_s."""
        while True:
            try:
                nodes = await self.backend.nodes()
            except BackendError as error:
                # No report rather than a wrong one: the broker's TTL then marks the site unhealthy.
                log.error("cannot read the site's nodes, skipping this report: %s", error)
            else:
                self._seq += 1
                outbox.put_nowait(
                    messages.report(self._seq, nodes, self.config.datasets, self._attempts.snapshot())
                )
            await asyncio.sleep(self.config.heartbeat_s)

    async def _handle(self, message: pb.BrokerMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "batch":
            for each in message.batch.messages:
                await self._handle(each)
            return
        if kind in ("assignment", "cancel"):
            order = message.assignment if kind == "assignment" else message.cancel
            if order.epoch < self._epoch:
                log.warning(
                    "dropped a %s of lease epoch %d (now %d): its broker lost the lease",
                    kind,
                    order.epoch,
                    self._epoch,
                    extra=self._fields(messages.key_of(order)),
                )
                return
        if kind == "assignment":
            await self._assign(message.assignment)
        elif kind == "cancel":
            await self._cancel(message.cancel)
        elif kind == "fetch_logs":
            self._logs.fetch(message.fetch_logs, self._send)
        elif kind == "stop_logs":
            self._logs.stop(message.stop_logs.request_id)
        else:
            log.warning("unexpected %s from the broker; ignored", kind)

    async def _assign(self, assignment: pb.Assignment) -> None:
        key = messages.key_of(assignment)
        known = self._attempts.get(key)
        if known is not None:
            # At-least-once delivery: a re-send is acknowledged again, never launched again.
            log.info(
                "assignment %s received again (%s); not launching a second copy",
                key,
                known.state,
                extra=self._fields(key),
            )
        else:
            trace_id = messages.trace_id_of(assignment)
            if log.isEnabledFor(logging.INFO):  # its fields cost more than the check, per attempt
                log.info(
                    "assignment %s received: %s for tenant %s, nodes %s",
                    key,
                    assignment.spec.name or "(unnamed)",
                    assignment.tenant,
                    ",".join(assignment.nodes) or "(any)",
                    extra=self._fields(key, trace_id, tenant=assignment.tenant),
                )
            self._attempts.taken(key, trace_id)
            self._for_attempt(key, lambda: self._launch(assignment))
        self._send(messages.ack(key))

    def _for_attempt(self, key: AttemptKey, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` in the attempt's own task, after whatever that attempt was already doing."""
        previous = self._work.get(key)

        async def chained() -> None:
            if previous is not None:
                await asyncio.wait({previous})  # its outcome is its own business, logged there
            await step()

        task = asyncio.create_task(chained(), name=f"agent attempt {key}")
        self._work[key] = task
        task.add_done_callback(lambda done: self._work.pop(key) if self._work.get(key) is done else None)

    async def _launch(self, assignment: pb.Assignment) -> None:
        key = messages.key_of(assignment)
        attributes: dict[str, str | int] = {  # the broker's names, so one search finds both sides
            "fedbroker.workload": key.workload_id,
            "fedbroker.attempt": key.attempt,
            "fedbroker.site": self.config.site,
            "fedbroker.tenant": assignment.tenant,
        }
        tracer = telemetry.tracer()
        span: trace.Span | None = None
        if telemetry.traces_exported():
            # Not made current (a context switch in and out per attempt cost as much as the span):
            # the backend's call is its child, and current, for whatever the backend's client traces.
            parent = telemetry.extract(assignment.trace_context)
            span = tracer.start_span("agent.launch", context=parent, attributes=attributes)
            carrier = telemetry.inject(span)
        else:
            # Nothing would export the span: only its ids are made, so the job's TRACEPARENT
            # still continues the workload's trace (a third of a launch's cost, unexported).
            traceparent = assignment.trace_context.get("traceparent") or None
            carrier = telemetry.span_carrier("agent.launch", attributes, traceparent)
        try:
            trace_env = {
                env: carrier[name]
                for env, name in ((messages.TRACEPARENT_ENV, "traceparent"), ("TRACESTATE", "tracestate"))
                if carrier.get(name)
            }
            launch = messages.launch_from(assignment, trace_env)
            try:
                if span is not None:
                    with tracer.start_as_current_span(
                        "backend.launch",
                        context=trace.set_span_in_context(span),
                        attributes={**attributes, "backend.kind": self.backend.kind},
                    ):
                        await self.backend.launch(launch)
                else:
                    await self.backend.launch(launch)
            except Exception as error:  # whatever went wrong, the attempt must end FAILED, not hang PLACED
                if span is not None:
                    span.set_status(Status(StatusCode.ERROR, str(error)))
                fields = _carrier_fields(self._fields(key), carrier)
                if isinstance(error, BackendError):
                    log.error("launch of %s failed: %s", key, error, extra=fields)
                else:
                    log.exception("launch of %s failed", key, extra=fields)
                self._changed(
                    AttemptStatus(key, State.FAILED, f"launch failed: {error}", reason=Reason.LAUNCH_ERROR)
                )
                return
        finally:
            if span is not None:
                span.end()
        if log.isEnabledFor(logging.INFO):
            log.info(
                "launched %s on the %s backend",
                key,
                self.backend.kind,
                extra=_carrier_fields(self._fields(key), carrier),
            )

    async def _cancel(self, cancel: pb.Cancel) -> None:
        key = messages.key_of(cancel)
        known = self._attempts.get(key)
        fields = self._fields(key)
        if known is None:
            log.info("cancel for %s, which this agent does not run; nothing to do", key, extra=fields)
            return
        if known.state.terminal:
            log.info("cancel for %s, which already ended %s; nothing to do", key, known.state, extra=fields)
            return
        log.info("cancelling %s: %s", key, cancel.reason or "asked by the broker", extra=fields)
        self._for_attempt(key, lambda: self._cancel_now(key))

    async def _cancel_now(self, key: AttemptKey) -> None:
        try:
            await self.backend.cancel(key)  # exactly this attempt: fencing by attempt number
        except BackendError as error:
            log.error("cancel of %s failed: %s", key, error, extra=self._fields(key))
        except Exception:
            log.exception("cancel of %s failed", key, extra=self._fields(key))

    async def _follow_backend(self) -> None:
        async for status in self.backend.changes():
            self._changed(status)

    def _changed(self, status: AttemptStatus) -> None:
        if not self._attempts.apply(status):
            return
        if log.isEnabledFor(logging.INFO):
            detail = f" ({status.message})" if status.message else ""
            log.info(
                "%s is %s%s",
                status.key,
                status.state,
                detail,
                extra=self._fields(status.key, state=status.state.value, reason=status.reason or None),
            )
        self._send(messages.update(status))

    def _fields(self, key: AttemptKey, trace_id: str | None = None, **more: str | None) -> dict[str, Any]:
        """The structured fields of a log line about one attempt (as `broker.observability.logs`'
        `workload_fields`): its workload, attempt and site, and its trace when the assignment
        brought one. A dict literal: this runs for every line about every attempt."""
        fields: dict[str, Any] = {"workload_id": key.workload_id, "attempt": key.attempt, "site": self._site}
        if trace_id is None:
            trace_id = self._attempts.trace_id(key)
        if trace_id:
            fields["trace_id"] = trace_id
        for name, value in more.items():
            if value is not None:
                fields[name] = value
        return fields

    def _send(self, message: pb.AgentMessage) -> None:
        # While disconnected the message is dropped on purpose: the next snapshot carries the state.
        if self._outbox is not None:
            self._outbox.put_nowait(message)


def _carrier_fields(fields: dict[str, Any], carrier: dict[str, str]) -> dict[str, Any]:
    """`fields` with the ids of the launch's span (from its W3C carrier): that span is never
    made current, so the log filter cannot see it."""
    if "traceparent" in carrier:
        fields["span_id"] = telemetry.carrier_span_id(carrier)
        fields.setdefault("trace_id", telemetry.carrier_trace_id(carrier))  # the assignment had none
    return fields


async def run_until_signalled(agent: Agent) -> None:
    """Run the agent; SIGTERM or SIGINT stops it cleanly (exit 0)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.stop)
    try:
        await agent.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def broker_channel(endpoint: str, tls: TlsFiles | None) -> grpc.aio.Channel:
    """One broker address: plaintext to loopback (or when `insecure`), else TLS verified against
    the CA file or the system's trust store, the certificate checked against this address's own
    host (or `server_name`), with this site's client certificate for mutual TLS. The files are
    read at each connection, so a renewed certificate is used from the next one."""
    if not tls_setup.uses_tls([endpoint], tls):
        return grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(endpoint, tls_setup.channel_credentials(tls), options=CHANNEL_OPTIONS)
