"""AgentService.Connect: one bidirectional stream per site agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from fedbroker.v1 import agent_service_pb2, agent_service_pb2_grpc

from broker.api.status import status_for
from broker.auth import Authenticator
from broker.dispatch import AgentSession
from broker.engine import Broker
from broker.errors import BrokerError, InvalidArgument

log = logging.getLogger("fedbroker.agents")


class AgentService(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, broker: Broker, auth: Authenticator) -> None:
        self.broker = broker
        self.auth = auth

    async def Connect(
        self,
        request_iterator: AsyncIterator[agent_service_pb2.AgentMessage],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[agent_service_pb2.BrokerMessage]:
        try:
            who = self.auth.identify(context.invocation_metadata())
            first = await anext(request_iterator, None)
            if first is None or first.WhichOneof("kind") != "hello":
                raise InvalidArgument("the first message on the stream must be Hello")
            session = self.broker.agent_hello(who, first.hello)
        except BrokerError as error:
            await context.abort(status_for(error), str(error))
        reader = asyncio.create_task(self._read(session, request_iterator))
        try:
            while True:
                outgoing = asyncio.ensure_future(session.outbox.get())
                done, _ = await asyncio.wait({outgoing, reader}, return_when=asyncio.FIRST_COMPLETED)
                if outgoing not in done:
                    outgoing.cancel()
                    return  # the agent closed its side, or the stream broke
                message = outgoing.result()
                if message is None:
                    return  # replaced by a newer session of the same site
                yield message
        finally:
            reader.cancel()
            self.broker.agent_disconnected(session)

    async def _read(
        self, session: AgentSession, messages: AsyncIterator[agent_service_pb2.AgentMessage]
    ) -> None:
        try:
            async for message in messages:
                if self.broker.dispatch.current(session.site) is not session:
                    return  # replaced by a newer session: its word no longer counts
                match message.WhichOneof("kind"):
                    case "inventory":
                        self.broker.agent_report(session.site, message.inventory)
                    case "update":
                        self.broker.agent_update(session.site, message.update)
                    case "ack":
                        self.broker.agent_ack(session.site, message.ack)
                    case other:
                        log.warning("ignored %s from the %s agent", other, session.site)
        except grpc.aio.AioRpcError:
            pass
        except Exception:
            # A bug must not pass silently: log it and end the stream; the agent reconnects.
            log.exception("error handling a message from the %s agent", session.site)
