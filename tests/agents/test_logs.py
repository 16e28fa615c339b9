"""The agent's side of `fedbroker logs` (site_agents/logs.py) against the in-test broker over real gRPC.

The broker's FetchLogs is answered with LogChunks tagged by request id, the last with
`done` (and an error when the backend could not answer); StopLogs ends a follow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fedbroker.v1 import agent_service_pb2 as pb

from site_agents.agent import Agent
from site_agents.backends.base import AttemptKey
from site_agents.backends.simulated import SimulatedBackend
from site_agents.backoff import Backoff
from tests.agents.harness import (
    RUNNING,
    SUCCEEDED,
    TOKEN,
    FakeBroker,
    agent_config,
    assignment,
    reporting_agent,
    running,
    serving,
)


def run(coro: Awaitable[None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await coro

    asyncio.run(bounded())


def fetch(
    request_id: str, workload_id: str, *, tail: int | None = None, follow: bool = False
) -> pb.BrokerMessage:
    return pb.BrokerMessage(
        fetch_logs=pb.FetchLogs(
            request_id=request_id, workload_id=workload_id, attempt=1, tail=tail, follow=follow
        )
    )


def received(broker: FakeBroker, kind: str) -> list[Any]:
    """Every `kind` message the agent sent, also those it sent inside an AgentBatch."""
    out = []
    for message in list(broker.messages):
        inner = message.batch.messages if message.WhichOneof("kind") == "batch" else [message]
        out += [getattr(m, kind) for m in inner if m.WhichOneof("kind") == kind]
    return out


def chunks(broker: FakeBroker, request_id: str) -> list[pb.LogChunk]:
    return [c for c in received(broker, "logs") if c.request_id == request_id]


async def reached(broker: FakeBroker, workload_id: str, state: int) -> None:
    await broker.wait_for(
        lambda: any((u.workload_id, u.state) == (workload_id, state) for u in received(broker, "update")),
        timeout=15,
    )


async def answered(broker: FakeBroker, request_id: str) -> list[pb.LogChunk]:
    await broker.wait_for(lambda: any(c.done for c in chunks(broker, request_id)), timeout=15)
    return chunks(broker, request_id)


def lines(received: list[pb.LogChunk]) -> list[str]:
    return [line for chunk in received for line in chunk.lines]


def test_an_ended_attempts_lines_then_done_and_the_tail() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, _):
            broker.send(assignment("w1", env={"FEDBROKER_SIM_SECONDS": "0"}))
            await reached(broker, "w1", SUCCEEDED)
            broker.send(fetch("r1", "w1"))
            received = await answered(broker, "r1")
            assert received[-1].error == pb.LogChunk.ERROR_UNSPECIFIED and not received[-1].lines
            assert "accepted" in lines(received)[0] and lines(received)[-1] == "succeeded: exit code 0"
            broker.send(fetch("r2", "w1", tail=1))
            assert lines(await answered(broker, "r2")) == ["succeeded: exit code 0"]

    run(main())


def test_an_attempt_the_backend_does_not_know_is_not_found() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, _):
            broker.send(fetch("r1", "never-launched"))
            [done] = await answered(broker, "r1")
            assert done.error == pb.LogChunk.ERROR_NOT_FOUND and "never-launched#1" in done.message

    run(main())


def test_follow_ends_with_the_attempt_and_stop_ends_it_early() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, _):
            broker.send(assignment("w1", env={"FEDBROKER_SIM_SECONDS": "1"}))
            broker.send(assignment("w2", env={"FEDBROKER_SIM_SECONDS": "30"}))
            await reached(broker, "w2", RUNNING)
            broker.send(fetch("follow", "w1", follow=True))
            broker.send(fetch("stopped", "w2", follow=True))
            await broker.wait_for(lambda: chunks(broker, "stopped"), timeout=15)  # it is following
            broker.send(pb.BrokerMessage(stop_logs=pb.StopLogs(request_id="stopped")))
            received = await answered(broker, "follow")  # only once w1 has ended
            assert lines(received)[-1] == "succeeded: exit code 0"
            assert not any(c.done for c in chunks(broker, "stopped"))  # a stopped follow sends no more

    run(main())


class NoLogsBackend(SimulatedBackend):
    """A backend that keeps no logs (as a site's custom backend might)."""

    def logs(self, key: AttemptKey, tail: int | None = None, follow: bool = False) -> AsyncIterator[str]:
        raise NotImplementedError("this backend keeps no logs")


def test_a_backend_without_logs_says_so() -> None:
    async def main() -> None:
        async with serving() as server:
            config = agent_config(server.port)
            assert config.backend.kind == "simulated"
            backend = NoLogsBackend(config.backend.node_groups, config.backend.time_scale)
            agent = Agent(
                config, TOKEN, backend, agent_id="test-agent", backoff=Backoff(initial_s=0.05, cap_s=0.2)
            )
            async with running(agent):
                broker = server.broker
                await broker.wait_for(lambda: received(broker, "inventory"), timeout=15)
                broker.send(fetch("r1", "w1"))
                [done] = await answered(broker, "r1")
                assert (
                    done.error == pb.LogChunk.ERROR_NO_LOGS and done.message == "this backend keeps no logs"
                )

    run(main())
