"""The authorisation matrix (issue 15): every RPC the broker serves x every kind of caller, the
status each gets, from ONE table, against a real broker process over gRPC.

The RPCs are enumerated from the running server (gRPC reflection) and from the generated
fedbroker descriptors: an RPC added without a row here, or a row for an RPC no longer served,
fails `test_every_rpc_has_a_row`. Callers: no token, a wrong token, tenant A on its own
workload, tenant B on A's workload (or naming A where the RPC takes a tenant), the agent of
site X, the agent of site Y, an operator. "A's workload" is one running at cyberport (site X)
for lion-rock-ai (A); Cancel gets a fresh one of A's per call.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from fedbroker.v1 import (
    agent_service_pb2,
    operator_service_pb2,
    site_service_pb2,
    types_pb2,
    usage_service_pb2,
    workload_service_pb2,
)
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from broker.localfed import DEV_TOKENS, LocalFederation
from broker.spec import parse_spec, spec_to_proto
from tests.security.harness import bounded_federation

A, B, X, Y = "lion-rock-ai", "harbour-robotics", "cyberport", "sandy-ridge"
CALLERS = ("none", "wrong", "tenant A", "tenant B", "agent X", "agent Y", "operator")
TOKENS = {
    "none": None,
    "wrong": "not-a-token-of-this-federation",
    "tenant A": DEV_TOKENS[A],
    "tenant B": DEV_TOKENS[B],
    "agent X": DEV_TOKENS[X],
    "agent Y": DEV_TOKENS[Y],
    "operator": DEV_TOKENS["sre"],
}

OK = grpc.StatusCode.OK
UN = grpc.StatusCode.UNAUTHENTICATED
PD = grpc.StatusCode.PERMISSION_DENIED
NF = grpc.StatusCode.NOT_FOUND  # another tenant's workload is answered as absent: ids leak nothing
FP = grpc.StatusCode.FAILED_PRECONDITION

WS, SS, US, OS, AS = (
    "fedbroker.v1.WorkloadService",
    "fedbroker.v1.SiteService",
    "fedbroker.v1.UsageService",
    "fedbroker.v1.OperatorService",
    "fedbroker.v1.AgentService",
)
HEALTH = "grpc.health.v1.Health"


@dataclass
class World:
    """What the requests refer to: A's running workload, and a way to make fresh ones."""

    fed: LocalFederation
    running: str  # A's workload, RUNNING at site X

    def fresh(self) -> str:
        """A new workload of A's (queued: it may run only at site Y, whose agent is away)."""
        with self.fed.client(A) as tenant:
            return str(tenant.submit(queued_spec()).workload.id)


def queued_spec() -> Any:
    return parse_spec(
        {
            "name": "authz",
            "backend": "ray",
            "ray": {"entrypoint": "python x.py"},
            "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
            "sites": [Y],
        }
    )


def submit(dry_run: bool) -> Callable[[World], Message]:
    return lambda w: workload_service_pb2.SubmitRequest(
        spec=spec_to_proto(queued_spec()), dry_run=dry_run, request_id=str(uuid.uuid4())
    )


def hello(site: str) -> Callable[[World], Message]:
    return lambda w: agent_service_pb2.AgentMessage(
        hello=agent_service_pb2.Hello(site=site, agent_id=f"authz-probe-{uuid.uuid4().hex[:6]}")
    )


# ONE table. Columns: none, wrong, tenant A, tenant B, agent X, agent Y, operator.
# Tenant B's column is B acting on A's workload (or naming A); for Submit and the unfiltered
# reads it is B's own call. Agents call nothing but Connect; operators everything but Submit.
MATRIX: dict[tuple[str, str, str], tuple[Callable[[World], Message], tuple[grpc.StatusCode, ...]]] = {
    # --------------------------------------------------------------------- workloads
    (WS, "Submit", ""): (submit(False), (UN, UN, OK, OK, PD, PD, PD)),
    (WS, "Submit", "dry run (quote)"): (submit(True), (UN, UN, OK, OK, PD, PD, PD)),
    (WS, "Get", "A's"): (
        lambda w: workload_service_pb2.GetWorkloadRequest(id=w.running),
        (UN, UN, OK, NF, PD, PD, OK),
    ),
    (WS, "List", ""): (lambda w: workload_service_pb2.ListWorkloadsRequest(), (UN, UN, OK, OK, PD, PD, OK)),
    (WS, "List", "tenant A"): (
        lambda w: workload_service_pb2.ListWorkloadsRequest(tenant=A),
        (UN, UN, OK, PD, PD, PD, OK),
    ),
    (WS, "Cancel", "A's (fresh)"): (
        lambda w: workload_service_pb2.CancelWorkloadRequest(id=w.fresh()),
        (UN, UN, OK, NF, PD, PD, OK),
    ),
    (WS, "Watch", "A's"): (
        lambda w: workload_service_pb2.WatchWorkloadRequest(id=w.running),
        (UN, UN, OK, NF, PD, PD, OK),
    ),
    (WS, "Explain", "A's"): (
        lambda w: workload_service_pb2.ExplainRequest(id=w.running),
        (UN, UN, OK, NF, PD, PD, OK),
    ),
    (WS, "Logs", "A's"): (
        lambda w: workload_service_pb2.LogsRequest(id=w.running, tail=5),
        (UN, UN, OK, NF, PD, PD, OK),
    ),
    (WS, "WatchWorkloads", ""): (
        lambda w: workload_service_pb2.WatchWorkloadsRequest(),
        (UN, UN, OK, OK, PD, PD, OK),
    ),
    (WS, "WatchWorkloads", "tenant A"): (
        lambda w: workload_service_pb2.WatchWorkloadsRequest(tenant=A),
        (UN, UN, OK, PD, PD, PD, OK),
    ),
    (WS, "ListEvents", "A's"): (
        lambda w: workload_service_pb2.ListEventsRequest(id=w.running),
        (UN, UN, OK, NF, PD, PD, OK),
    ),
    (WS, "Queue", ""): (lambda w: workload_service_pb2.QueueRequest(), (UN, UN, OK, OK, PD, PD, OK)),
    (WS, "Queue", "tenant A"): (
        lambda w: workload_service_pb2.QueueRequest(tenant=A),
        (UN, UN, OK, PD, PD, PD, OK),
    ),
    # --------------------------------------------------------------------- sites, money, operators
    (SS, "ListSites", ""): (lambda w: site_service_pb2.ListSitesRequest(), (UN, UN, OK, OK, PD, PD, OK)),
    (US, "GetUsage", ""): (lambda w: usage_service_pb2.GetUsageRequest(), (UN, UN, OK, OK, PD, PD, OK)),
    (US, "GetUsage", "tenant A"): (
        lambda w: usage_service_pb2.GetUsageRequest(tenant=A),
        (UN, UN, OK, PD, PD, PD, OK),
    ),
    (OS, "SetPlacementPaused", "resume"): (
        lambda w: operator_service_pb2.SetPlacementPausedRequest(paused=False),
        (UN, UN, PD, PD, PD, PD, OK),
    ),
    (OS, "ReloadConfig", ""): (
        lambda w: operator_service_pb2.ReloadConfigRequest(),
        (UN, UN, PD, PD, PD, PD, OK),
    ),
    # --------------------------------------------------------------------- the agent stream
    # Hello for site Y: only Y's agent; X's agent claiming Y is refused, as are tenants and operators.
    (AS, "Connect", "Hello site Y"): (hello(Y), (UN, UN, PD, PD, PD, OK, PD)),
    # Hello for site X: X's own token, but X's agent is connected already (a second would take
    # turns with it): FAILED_PRECONDITION, and it waits. Y's agent claiming X is refused.
    (AS, "Connect", "Hello site X"): (hello(X), (UN, UN, PD, PD, FP, PD, PD)),
    # --------------------------------------------------------------------- public by design
    # Health (probes and load balancers carry no token) and reflection (the schema, which is public).
    (HEALTH, "Check", ""): (lambda w: health_pb2.HealthCheckRequest(), (OK,) * 7),
    (HEALTH, "Watch", ""): (lambda w: health_pb2.HealthCheckRequest(), (OK,) * 7),
    # Declared by grpc's health proto; its asyncio servicer does not implement it (yet).
    (HEALTH, "List", ""): (lambda w: health_pb2.HealthListRequest(), (grpc.StatusCode.UNIMPLEMENTED,) * 7),
    ("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", ""): (
        lambda w: reflection_pb2.ServerReflectionRequest(list_services=""),
        (OK,) * 7,
    ),
}
FEDBROKER_MODULES = (
    agent_service_pb2,
    operator_service_pb2,
    site_service_pb2,
    types_pb2,
    usage_service_pb2,
    workload_service_pb2,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("authz")
    fed = LocalFederation(
        root,
        config=bounded_federation(root),
        agent_overrides={"heartbeat_s": 0.5},
        agents={X: LocalFederation(root).agent_configs[X]},
    )
    with fed:
        fed.start_broker()
        fed.start_agent(X)
        fed.wait_healthy([X])
        spec = parse_spec(
            {
                "name": "authz-running",
                "backend": "ray",
                "ray": {"entrypoint": "python train.py"},
                "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
                "sites": [X],
                "env": {"FEDBROKER_SIM_SECONDS": "3600"},
            }
        )
        with fed.client(A) as tenant:
            running = tenant.submit(spec).workload.id
            fed.wait(lambda: tenant.get(running).state == types_pb2.WORKLOAD_STATE_RUNNING, 30, "RUNNING")
        yield World(fed, running)


def served_rpcs(endpoint: str) -> dict[tuple[str, str], tuple[bool, bool]]:
    """(service, method) -> (client streaming, server streaming), as the server's reflection says."""
    with grpc.insecure_channel(endpoint) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        found = {}
        for service in database.get_services():
            for method in pool.FindServiceByName(service).methods:
                found[(service, method.name)] = (method.client_streaming, method.server_streaming)
        return found


def status(
    channel: grpc.Channel, rpc: str, shape: tuple[bool, bool], request: Message, token: str | None
) -> Any:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    body = request.SerializeToString()
    client_streaming, server_streaming = shape
    try:
        if not client_streaming and not server_streaming:
            channel.unary_unary(rpc)(body, metadata=metadata, timeout=15)
            return OK
        if client_streaming:
            call = channel.stream_stream(rpc)(iter([body]), metadata=metadata, timeout=15)
        else:
            call = channel.unary_stream(rpc)(body, metadata=metadata, timeout=15)
        with contextlib.suppress(StopIteration):  # StopIteration: it ended at once, with OK
            next(call)  # the first message (or the refusal) says how the call went
        call.cancel()
        return OK
    except grpc.RpcError as error:
        return error.code()


def test_every_rpc_has_a_row(world: World) -> None:
    served = set(served_rpcs(world.fed.endpoint))
    declared = {
        (service.full_name, method.name)
        for module in FEDBROKER_MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    rows = {(service, method) for service, method, _ in MATRIX}
    assert all(len(expected) == len(CALLERS) for _, expected in MATRIX.values())
    assert declared <= served, f"declared but not served: {sorted(declared - served)}"
    assert served - rows == set(), f"RPCs with no row in MATRIX: {sorted(served - rows)}"
    assert rows - served == set(), f"rows for RPCs not served: {sorted(rows - served)}"


@pytest.mark.parametrize(
    "row", list(MATRIX), ids=lambda r: f"{r[0].rsplit('.', 1)[1]}.{r[1]}{' ' + r[2] if r[2] else ''}"
)
def test_matrix(world: World, row: tuple[str, str, str]) -> None:
    service, method, _ = row
    make, expected = MATRIX[row]
    shape = served_rpcs(world.fed.endpoint)[(service, method)]
    got = {}
    with grpc.insecure_channel(world.fed.endpoint) as channel:
        for caller in CALLERS:
            got[caller] = status(channel, f"/{service}/{method}", shape, make(world), TOKENS[caller])
    wanted = dict(zip(CALLERS, expected, strict=True))
    assert {c: s.name for c, s in got.items()} == {c: s.name for c, s in wanted.items()}
