"""A small in-test broker for the agent tests: a real grpc.aio AgentService on 127.0.0.1.

It checks the bearer token and the site like the broker does, records every
message the agent sends, and lets a test send Assignment and Cancel messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from fedbroker.v1 import agent_service_pb2 as pb
from fedbroker.v1 import agent_service_pb2_grpc, types_pb2

from site_agents.agent import Agent
from site_agents.backends.base import AttemptKey
from site_agents.backends.simulated import SimulatedBackend
from site_agents.backoff import Backoff
from site_agents.config import AgentConfig, parse_agent_config

TOKEN = "cyberport-secret"
SITE = "cyberport"
RUNNING = types_pb2.WORKLOAD_STATE_RUNNING
SUCCEEDED = types_pb2.WORKLOAD_STATE_SUCCEEDED
FAILED = types_pb2.WORKLOAD_STATE_FAILED
CANCELLED = types_pb2.WORKLOAD_STATE_CANCELLED


class FakeBroker(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, token: str = TOKEN, site: str = SITE) -> None:
        self.token = token
        self.site = site
        self.connections = 0
        self.clean_ends = 0  # streams the agent half-closed (a graceful stop) rather than dropped
        self.messages: list[pb.AgentMessage] = []  # everything received, in order, over all streams
        self._outbox: asyncio.Queue[pb.BrokerMessage | None] | None = None

    async def Connect(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        self.connections += 1
        metadata = dict(context.invocation_metadata() or ())
        if metadata.get("authorization") != f"Bearer {self.token}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown agent token")
        hello = await context.read()
        self.messages.append(hello)
        if hello.hello.site != self.site:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"this token is not site {hello.hello.site}'s"
            )
        await context.write(pb.BrokerMessage(welcome=pb.Welcome(broker_id="test-broker", heartbeat_ttl_s=15)))
        outbox = self._outbox = asyncio.Queue()
        reader = asyncio.create_task(self._read(context))
        try:
            while True:
                get = asyncio.create_task(outbox.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    return
                message = get.result()
                if message is None:
                    return
                await context.write(message)
        finally:
            reader.cancel()

    async def _read(self, context: grpc.aio.ServicerContext) -> None:
        while (message := await context.read()) is not grpc.aio.EOF:
            # An agent under load batches what it has queued; what it said is the messages inside.
            self.messages.extend(message.batch.messages if message.HasField("batch") else (message,))
        self.clean_ends += 1

    def send(self, message: pb.BrokerMessage) -> None:
        assert self._outbox is not None, "no agent connected"
        self._outbox.put_nowait(message)

    def of(self, kind: str) -> list[Any]:
        return [getattr(m, kind) for m in self.messages if m.WhichOneof("kind") == kind]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll until predicate() is truthy; return its value."""
        async with asyncio.timeout(timeout):
            while not (value := predicate()):
                await asyncio.sleep(0.01)
        return value

    async def wait_report(self, predicate: Callable[[pb.InventoryReport], bool], after: int = 0) -> Any:
        """The first report, among those received after the `after`-th message, that satisfies predicate."""

        def find() -> pb.InventoryReport | None:
            for message in self.messages[after:]:
                if message.WhichOneof("kind") == "inventory" and predicate(message.inventory):
                    return message.inventory
            return None

        return await self.wait_for(find)

    async def wait_update(self, workload_id: str, attempt: int, state: int) -> Any:
        return await self.wait_for(
            lambda: next(
                (
                    u
                    for u in self.of("update")
                    if (u.workload_id, u.attempt, u.state) == (workload_id, attempt, state)
                ),
                None,
            )
        )


class BrokerServer:
    """A FakeBroker served on a port that survives restarts (to test reconnects)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server()
        agent_service_pb2_grpc.add_AgentServiceServicer_to_server(self.broker, server)
        self.port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


@contextlib.asynccontextmanager
async def serving(broker: FakeBroker | None = None) -> AsyncIterator[BrokerServer]:
    server = BrokerServer(broker or FakeBroker())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def agent_config(port: int, heartbeat_s: float = 0.1, nodes: int = 2, **extra: Any) -> AgentConfig:
    return parse_agent_config(
        {
            "site": SITE,
            "broker": f"127.0.0.1:{port}",
            "heartbeat_s": heartbeat_s,
            "datasets": ["cantonese-speech"],
            "backend": {
                "kind": "simulated",
                "time_scale": 0.0001,
                "node_groups": [
                    {
                        "count": nodes,
                        "name_prefix": "cp-h800",
                        "gpu_model": "H800",
                        "gpus": 8,
                        "gpu_memory_gb": 80,
                        "cpus": 128,
                        "memory_gb": 1024,
                    }
                ],
            },
            **extra,
        }
    )


def make_agent(port: int, token: str = TOKEN, **config: Any) -> tuple[Agent, SimulatedBackend]:
    cfg = agent_config(port, **config)
    assert cfg.backend.kind == "simulated"
    backend = SimulatedBackend(cfg.backend.node_groups, cfg.backend.time_scale)
    backoff = Backoff(initial_s=0.05, cap_s=0.2)  # tests reconnect fast
    return Agent(cfg, token, backend, agent_id="test-agent", backoff=backoff), backend


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[asyncio.Task[None]]:
    """Run the agent for the block; stop it cleanly after (it must return within 5 s)."""
    task = asyncio.create_task(agent.run())
    try:
        yield task
    finally:
        agent.stop()
        async with asyncio.timeout(5):
            await task


@contextlib.asynccontextmanager
async def reporting_agent() -> AsyncIterator[tuple[FakeBroker, SimulatedBackend]]:
    """A broker, and an agent connected to it that has sent its first inventory report."""
    async with serving() as server:
        agent, backend = make_agent(server.port)
        async with running(agent):
            await server.broker.wait_for(lambda: server.broker.of("inventory"))
            yield server.broker, backend


def assignment(
    workload_id: str,
    attempt: int = 1,
    *,
    replicas: int = 1,
    gpus: int = 8,
    env: Mapping[str, str] | None = None,
    nodes: Sequence[str] = (),
    trace_context: Mapping[str, str] | None = None,
) -> pb.BrokerMessage:
    spec = types_pb2.WorkloadSpec(
        name=f"job-{workload_id}",
        backend="kubernetes",
        kubernetes=types_pb2.KubernetesSpec(
            image="registry.example/train:1.2", command=["python", "train.py"]
        ),
        resources=types_pb2.Resources(gpus_per_replica=gpus, gpu_model="H800", replicas=replicas),
        estimated_hours=1,
        env=dict(env or {}),
    )
    return pb.BrokerMessage(
        assignment=pb.Assignment(
            workload_id=workload_id,
            attempt=attempt,
            tenant="lion-rock-ai",
            spec=spec,
            nodes=list(nodes),
            trace_context=dict(trace_context or {}),
        )
    )


def cancel(workload_id: str, attempt: int = 1) -> pb.BrokerMessage:
    return pb.BrokerMessage(cancel=pb.Cancel(workload_id=workload_id, attempt=attempt, reason="test"))


def gpus_allocated(report: pb.InventoryReport) -> int:
    return sum(node.gpus_allocated for node in report.nodes)


def states(report: pb.InventoryReport) -> dict[tuple[str, int], int]:
    return {(w.workload_id, w.attempt): w.state for w in report.workloads}


def key(workload_id: str, attempt: int = 1) -> AttemptKey:
    return AttemptKey(workload_id, attempt)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
