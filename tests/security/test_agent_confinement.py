"""Agent confinement (issue 15): what one site's agent says moves nothing of another site's.

A real broker and cyberport's real agent (site X); sandy-ridge (site Y) is a scripted agent with
Y's own token speaking the real protocol over the real stream, and lying. Refusals at Hello (an
agent claiming another site) are rows of tests/security/test_authz_matrix.py; a report beyond a
site's declared capacity is tests/security/test_hostile.py's.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
import pytest
from fedbroker.v1 import agent_service_pb2 as a
from fedbroker.v1 import agent_service_pb2_grpc as ag
from fedbroker.v1 import types_pb2

from broker.localfed import DEV_TOKENS, LocalFederation
from broker.spec import parse_spec
from tests.security.harness import bounded_federation

X, Y, A = "cyberport", "sandy-ridge", "lion-rock-ai"
RUNNING = types_pb2.WORKLOAD_STATE_RUNNING
SUCCEEDED = types_pb2.WORKLOAD_STATE_SUCCEEDED
FAILED = types_pb2.WORKLOAD_STATE_FAILED
CANCELLED = types_pb2.WORKLOAD_STATE_CANCELLED
PLACED = types_pb2.WORKLOAD_STATE_PLACED


class ScriptedAgent:
    """An agent as a script: Hello, then whatever the test sends; what the broker sends back is
    collected (batches opened)."""

    def __init__(self, endpoint: str, site: str, token: str) -> None:
        self._outbox: queue.Queue[a.AgentMessage | None] = queue.Queue()
        self._outbox.put(a.AgentMessage(hello=a.Hello(site=site, agent_id="scripted")))
        self._seq = 0
        self._lock = threading.Lock()
        self.received: list[a.BrokerMessage] = []
        self._channel = grpc.insecure_channel(endpoint)
        self._stream = ag.AgentServiceStub(self._channel).Connect(
            iter(self._outbox.get, None), metadata=(("authorization", f"Bearer {token}"),), timeout=120
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(lambda m: m.HasField("welcome"), "the Welcome")

    def _read(self) -> None:
        try:
            for message in self._stream:
                with self._lock:
                    self.received.extend(message.batch.messages if message.HasField("batch") else (message,))
        except grpc.RpcError:
            pass

    def send(self, message: a.AgentMessage) -> None:
        self._outbox.put(message)

    def report(self, nodes: Sequence[types_pb2.Node], workloads: Sequence[a.RunningWorkload] = ()) -> None:
        self._seq += 1
        self.send(
            a.AgentMessage(inventory=a.InventoryReport(seq=self._seq, nodes=nodes, workloads=workloads))
        )

    def wait_for(
        self, wanted: Callable[[a.BrokerMessage], bool], what: str, timeout: float = 15
    ) -> a.BrokerMessage:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = next((m for m in self.received if wanted(m)), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"no {what} from the broker; got {self.received}")

    def close(self) -> None:
        self._outbox.put(None)
        self._stream.cancel()
        self._channel.close()


def h800(name: str, gpus: int = 8) -> types_pb2.Node:
    return types_pb2.Node(name=name, gpu_model="H800", gpus_allocatable=gpus, cpus=64, memory_gb=512)


def spec(site: str, seconds: float = 3600) -> Any:
    return parse_spec(
        {
            "name": "confined",
            "backend": "ray",
            "ray": {"entrypoint": "python train.py"},
            "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
            "estimated_hours": 1.0,
            "sites": [site],
            "env": {"FEDBROKER_SIM_SECONDS": str(seconds)},
        }
    )


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("confinement")
    federation = LocalFederation(
        root,
        config=bounded_federation(root),
        agent_overrides={"heartbeat_s": 0.5},
        agents={X: LocalFederation(root).agent_configs[X]},
    )
    with federation:
        federation.start_broker()
        federation.start_agent(X)
        federation.wait_healthy([X])
        yield federation


@pytest.fixture
def liar(fed: LocalFederation) -> Iterator[ScriptedAgent]:
    agent = ScriptedAgent(fed.endpoint, Y, DEV_TOKENS[Y])
    yield agent
    agent.close()
    time.sleep(0.3)  # its stream's end reaches the engine before the next test's Hello


def running_at_x(fed: LocalFederation) -> str:
    with fed.client(A) as tenant:
        wid = str(tenant.submit(spec(X)).workload.id)
        fed.wait(lambda: tenant.get(wid).state == RUNNING, 30, "RUNNING at cyberport")
    return wid


def snapshot(fed: LocalFederation, wid: str) -> tuple[Any, ...]:
    with fed.client("sre") as operator:
        record = operator.get(wid)
        return record.state, record.site, record.attempt, len(operator.events(wid))


def test_an_agent_cannot_move_another_sites_workload(fed: LocalFederation, liar: ScriptedAgent) -> None:
    """Y's agent says X's running workload succeeded, failed, was cancelled, runs at Y; and makes
    up an id. Nothing moves; what Y claims to run is fenced at Y (a Cancel to Y), never at X."""
    wid = running_at_x(fed)
    before = snapshot(fed, wid)
    claims = [
        a.RunningWorkload(workload_id=wid, attempt=1, state=SUCCEEDED, exit_code=0, reason="exit"),
        a.RunningWorkload(workload_id="wl-000000000000", attempt=1, state=RUNNING),
    ]
    liar.report([h800("y-0")], claims)
    for state in (FAILED, CANCELLED, SUCCEEDED, RUNNING):
        liar.send(
            a.AgentMessage(update=a.WorkloadUpdate(workload_id=wid, attempt=1, state=state, reason="exit"))
        )
    liar.send(a.AgentMessage(ack=a.Ack(workload_id=wid, attempt=1)))
    cancel = liar.wait_for(
        lambda m: m.HasField("cancel") and m.cancel.workload_id == wid, "Cancel of the claim"
    )
    assert cancel.cancel.reason.startswith("stale attempt")
    liar.wait_for(lambda m: m.HasField("cancel") and m.cancel.workload_id == "wl-000000000000", "Cancel")
    liar.report([h800("y-0")])  # one more cycle: anything it moved would show now
    time.sleep(1.0)
    assert snapshot(fed, wid) == before == (RUNNING, X, 1, before[3])
    assert "cyberport" in fed.log_tail(f"agent-{X}", 200)  # X's agent kept running it, untold
    with fed.client("sre") as operator:
        operator.cancel(wid)


def test_an_agent_cannot_move_an_attempt_it_was_not_assigned(
    fed: LocalFederation, liar: ScriptedAgent
) -> None:
    """At its own site, Y's agent reports an attempt the broker never assigned (attempt 2 of a
    workload it holds attempt 1 of): ignored; its real attempt still moves as it says."""
    liar.report([h800("y-0", 16)])
    with fed.client(A) as tenant:
        wid = str(tenant.submit(spec(Y)).workload.id)
    assignment = liar.wait_for(
        lambda m: m.HasField("assignment") and m.assignment.workload_id == wid, "the assignment"
    )
    assert assignment.assignment.attempt == 1
    for attempt in (2, 0, -1):
        liar.send(a.AgentMessage(update=a.WorkloadUpdate(workload_id=wid, attempt=attempt, state=SUCCEEDED)))
        liar.send(a.AgentMessage(update=a.WorkloadUpdate(workload_id=wid, attempt=attempt, state=FAILED)))
    liar.report([h800("y-0", 16)])
    time.sleep(1.0)
    assert snapshot(fed, wid)[:3] == (PLACED, Y, 1)
    # The attempt it was given does move (so the refusals above are not a dead stream).
    liar.send(a.AgentMessage(update=a.WorkloadUpdate(workload_id=wid, attempt=1, state=RUNNING)))
    fed.wait(lambda: snapshot(fed, wid)[0] == RUNNING, 10, "RUNNING on its own attempt")
    with fed.client("sre") as operator:
        operator.cancel(wid)


def test_an_agent_cannot_inflate_another_sites_inventory(fed: LocalFederation, liar: ScriptedAgent) -> None:
    """Y's agent reports X's node names, with more GPUs: only Y's inventory is Y's report."""

    def site(name: str) -> Any:
        with fed.client("sre") as operator:
            return next(s for s in operator.sites() if s.name == name)

    x_before = site(X)
    names = [n.name for n in x_before.nodes]
    assert names and x_before.gpus_total == 32
    liar.report([h800(name, 8) for name in names])  # 4 x 8 = 32: within Y's own capacity
    fed.wait(lambda: site(Y).gpus_total == 32, 10, "Y's own report taken")
    time.sleep(1.0)  # X's agent reports twice more meanwhile
    x_after = site(X)
    assert (x_after.gpus_total, [n.name for n in x_after.nodes]) == (32, names)
    assert x_after.gpus_allocated == x_before.gpus_allocated
