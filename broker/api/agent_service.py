"""AgentService.Connect: one bidirectional stream per site agent.

The reader stamps every message's arrival (the site is alive, whatever the engine is
busy with), checks and converts it, and hands it to the engine; the writer drains the
session's outbox, in batches when it holds several. A snapshot that repeats the last
one is handed over as the same `Inventory` object, which the engine skips at no cost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from fedbroker.v1 import agent_service_pb2, agent_service_pb2_grpc

from broker import batching
from broker.api import convert, logs
from broker.api.capacity import within_capacity
from broker.api.limits import bounded
from broker.api.malformed import Malformed
from broker.api.status import abort
from broker.auth import Authenticator, Identity
from broker.engine import commands as c
from broker.engine.commands import Inventory
from broker.engine.engine import Engine
from broker.engine.links import AgentSession
from broker.engine.records import ToAgent
from broker.errors import BrokerError, InvalidArgument, PermissionDenied
from broker.relay.protocol import relayed_peer_names
from broker.tls import peer_names

log = logging.getLogger("fedbroker.agents")


class AgentService(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, engine: Engine, auth: Authenticator, *, behind_fronts: bool = False) -> None:
        self.engine = engine
        self.auth = auth
        # Behind fronts (broker/relay) the TLS session is the front's: it sends the caller's
        # verified certificate names along, on a socket only this broker's user can open.
        self._behind_fronts = behind_fronts
        self._streams: dict[AgentSession, Identity] = {}  # open streams and who opened them

    def end_revoked(self, config: object) -> None:
        """After a config reload (a listener, after the Authenticator's): end the streams opened
        with a token the new config no longer holds. The call was authorised when the stream
        opened; a removed token must not keep speaking for its site until it reconnects."""
        for session, who in list(self._streams.items()):
            if not self.auth.knows(who):
                log.warning("ended the %s agent's stream: its token was removed from the config", who.name)
                session.close()

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_service_pb2.AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_service_pb2.BrokerMessage]:
        try:
            who = self.auth.identify(context.invocation_metadata())
            if who.role != "agent":
                raise PermissionDenied(f"{who} is not a site agent")
            names = (
                relayed_peer_names(context.invocation_metadata())
                if self._behind_fronts
                else peer_names(context.auth_context())
            )
            self.auth.check_agent_certificate(who.name, names)
            # The credential is good: say so before reading. A front waits for this before it
            # passes the Hello on, so a refusal never races a write (which gRPC then reports as
            # INTERNAL, losing the refusal's status).
            await context.send_initial_metadata(())
            first = await anext(request_iterator, None)
            if isinstance(first, Malformed):
                raise InvalidArgument(f"hello: {first.describe()}")
            if first is None or first.WhichOneof("kind") != "hello":
                raise InvalidArgument("hello: the first message on the stream must be Hello")
            if first.hello.site != who.name:
                raise PermissionDenied(f"this token is for site {who.name!r}, not {first.hello.site[:64]!r}")
            session: AgentSession = await self.engine.call(c.Hello(who.name, first.hello.agent_id[:128]))
        except BrokerError as error:
            log.warning("refused an agent: %s", error)
            await abort(context, error)
        self._streams[session] = who
        reader = asyncio.create_task(self._read(session, request_iterator))
        # Ends at None in the outbox: replaced by a newer session of the site, the broker stops
        # (or steps down: a session lives within one lease epoch, which stamps its messages), or
        # the agent's side ended. That last None comes from the reader's end rather than from
        # waiting on the reader beside every batch (an asyncio.wait per batch per agent was 3%
        # of the event loop at 10 sites).
        reader.add_done_callback(lambda _: session.outbox.put_nowait(None))
        epoch = self.engine.epoch

        def encode(message: ToAgent) -> agent_service_pb2.BrokerMessage:
            return convert.to_agent(message, epoch)

        outbox = batching.batches(session.outbox, encode)
        try:
            # The Welcome, queued by Hello, goes alone: an agent reads it first, before any batch.
            welcome = session.outbox.get_nowait()
            if welcome is None:
                return
            yield encode(welcome)
            async for batch in outbox:
                if len(batch) == 1:
                    yield batch[0]
                else:
                    yield agent_service_pb2.BrokerMessage(batch=agent_service_pb2.BrokerBatch(messages=batch))
        finally:
            self._streams.pop(session, None)
            reader.cancel()
            session.end_log_readers()
            self.engine.post(c.Gone(session))

    async def _read(
        self, session: AgentSession, messages: AsyncIterator[agent_service_pb2.AgentMessage]
    ) -> None:
        engine = self.engine
        reader = _Reader(engine, session)
        try:
            async for received in messages:
                engine.heard(session)
                if isinstance(received, Malformed):
                    log.warning("dropped a message from the %s agent: %s", session.site, received.describe())
                elif received.HasField("batch"):
                    for message in received.batch.messages:
                        reader.take(message)
                else:
                    reader.take(received)
        except grpc.aio.AioRpcError:
            pass
        except Exception:
            # A bug must not pass silently: log it and end the stream; the agent reconnects.
            log.exception("error handling a message from the %s agent", session.site)


class _Reader:
    """Turns one stream's messages into engine commands; a snapshot equal to the last
    one is handed over as the same `Inventory` object."""

    def __init__(self, engine: Engine, session: AgentSession) -> None:
        self.engine = engine
        self.session = session
        self.last: agent_service_pb2.InventoryReport | None = None
        self.last_inventory: Inventory | None = None

    def take(self, message: agent_service_pb2.AgentMessage) -> None:
        engine, session = self.engine, self.session
        kind = message.WhichOneof("kind")
        try:
            if kind == "inventory":
                report = message.inventory
                last = self.last
                if not (
                    last is not None
                    and self.last_inventory is not None
                    and report.workloads == last.workloads
                    and report.nodes == last.nodes
                    and report.datasets == last.datasets
                ):
                    inventory = convert.inventory(report)
                    within_capacity(inventory, engine.config.site(session.site), engine.config.limits)
                    self.last_inventory = inventory
                    self.last = report
                assert self.last_inventory is not None
                engine.post(c.Report(session, report.seq, self.last_inventory))
            elif kind == "update":
                engine.post(c.Update(session, convert.attempt(message.update)))
            elif kind == "ack":
                engine.post(c.Ack(session, message.ack.workload_id, message.ack.attempt))
            elif kind == "logs":
                logs.deliver(session.log_readers, message.logs)  # to its relay, never to the engine
            else:
                log.warning("ignored %s from the %s agent", kind, session.site)
        except convert.BadReport as error:
            log.error("dropped a %s from the %s agent: %s", kind, session.site, bounded(str(error)))
