"""The defects found with hostile input (issue 15), each against a real broker process.

Each test failed before its fix: UNKNOWN with Python exception class names for malformed
protobuf and for NaN or deep runtime_env; a megabyte id reaching SQLite's LIKE (its SQL in
the error) and a 16 KB gpu_model echoed into a header gRPC refused; an agent's inventory
trusted without bound.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fedbroker.v1 import agent_service_pb2 as a
from fedbroker.v1 import agent_service_pb2_grpc as ag
from fedbroker.v1 import types_pb2
from fedbroker.v1 import workload_service_pb2 as w
from fedbroker.v1 import workload_service_pb2_grpc as wg

from broker.api.limits import MAX_ERROR_CHARS
from broker.localfed import DEV_TOKENS, LocalFederation
from broker.spec import MAX_SPEC_BYTES
from tests.security.harness import (
    SERVER_STREAMS,
    UNARY,
    bounded_federation,
    field_bytes,
    nested,
    raw_stream,
    raw_unary,
    ray_spec,
    token,
)

GARBAGE = [b"\xff\xff\xff\xff\x0f", b"\x0a\xff\xff\xff\xff\x0f", b"\x08", b"\x12\x05ab"]


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("hostile")
    federation = LocalFederation(
        root,
        config=bounded_federation(root),
        agent_overrides={"heartbeat_s": 0.5, "backend": {"time_scale": 0.0001}},
        agents={"cyberport": LocalFederation(root).agent_configs["cyberport"]},
    )
    with federation:
        federation.start_broker()
        federation.start_agent("cyberport")
        federation.wait_healthy(["cyberport"])
        yield federation


@pytest.fixture(scope="module")
def channel(fed: LocalFederation) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fed.endpoint) as ch:
        yield ch


def plain(error: grpc.RpcError) -> str:
    details = error.details() or ""
    assert "<class" not in details and "Traceback" not in details and "Error:" not in details, details
    assert len(details) <= MAX_ERROR_CHARS
    return details


@pytest.mark.parametrize(("service", "method"), UNARY)
def test_malformed_protobuf_is_invalid_argument_in_words(
    channel: grpc.Channel, service: str, method: str
) -> None:
    call = raw_unary(channel, service, method)
    for garbage in GARBAGE:
        try:
            call(garbage, metadata=token("sre"), timeout=5)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                assert "not a valid fedbroker.v1." in plain(error) or ":" in plain(error)
            else:  # bytes that happen to parse: any answer but UNKNOWN/INTERNAL
                assert error.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), error
                plain(error)


@pytest.mark.parametrize(("service", "method"), SERVER_STREAMS)
def test_malformed_protobuf_on_streams(channel: grpc.Channel, service: str, method: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        list(raw_stream(channel, service, method)(GARBAGE[0], metadata=token("sre"), timeout=5))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid fedbroker.v1." in plain(refused.value)


def test_malformed_agent_message(channel: grpc.Channel) -> None:
    connect = channel.stream_stream(
        "/fedbroker.v1.AgentService/Connect", request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as refused:
        next(connect(iter([b"\xff\xff\xff"]), metadata=token("cyberport"), timeout=5))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "fedbroker.v1.AgentMessage" in plain(refused.value)


def test_runtime_env_nested_past_protobufs_limit(channel: grpc.Channel) -> None:
    spec = ray_spec()
    spec.ray.runtime_env.update(nested(40))
    body = field_bytes(1, spec.SerializeToString())  # SubmitRequest.spec, past upb's 100 levels
    with pytest.raises(grpc.RpcError) as refused:
        raw_unary(channel, "WorkloadService", "Submit")(body, metadata=token("lion-rock-ai"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nested deeper than protobuf's 100 levels" in plain(refused.value)


@pytest.mark.parametrize(
    ("runtime_env", "expected"),
    [
        (nested(20), "ray.runtime_env: nested deeper than 16 levels"),
        ({"x": float("nan")}, "ray.runtime_env: numbers must be finite"),
        ({"x": [1.0, {"y": float("inf")}]}, "ray.runtime_env: numbers must be finite"),
        ({"x": float("-inf")}, "ray.runtime_env: numbers must be finite"),
    ],
)
def test_runtime_env_deep_or_not_finite(channel: grpc.Channel, runtime_env: dict, expected: str) -> None:
    spec = ray_spec()
    spec.ray.runtime_env.update(runtime_env)
    with pytest.raises(grpc.RpcError) as refused:
        wg.WorkloadServiceStub(channel).Submit(
            w.SubmitRequest(spec=spec), metadata=token("lion-rock-ai"), timeout=5
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in plain(refused.value)


def test_list_with_unknown_state_or_negative_limit(channel: grpc.Channel) -> None:
    stub = wg.WorkloadServiceStub(channel)
    for request, field in (
        (w.ListWorkloadsRequest(states=[99]), "states"),
        (w.ListWorkloadsRequest(limit=-1), "limit"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            stub.List(request, metadata=token("sre"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert plain(refused.value).startswith(f"{field}: ")


@pytest.mark.parametrize("size", [16 * 1024, 1024 * 1024])
def test_long_input_is_never_echoed(channel: grpc.Channel, size: int) -> None:
    stub = wg.WorkloadServiceStub(channel)
    long_id = "x" * size
    for call, request in (
        (stub.Get, w.GetWorkloadRequest(id=long_id)),
        (stub.Cancel, w.CancelWorkloadRequest(id=long_id)),
        (stub.Explain, w.ExplainRequest(id=long_id)),
        (stub.ListEvents, w.ListEventsRequest(id=long_id)),
        (stub.List, w.ListWorkloadsRequest(name=long_id)),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call(request, metadata=token("lion-rock-ai"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value
        assert "at most 256 are accepted" in plain(refused.value)
    spec = ray_spec()
    spec.resources.gpu_model = "G" * size
    with pytest.raises(grpc.RpcError) as refused:
        stub.Submit(w.SubmitRequest(spec=spec), metadata=token("lion-rock-ai"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resources.gpu_model: must be at most 64 characters" in plain(refused.value)

    hello = iter([a.AgentMessage(hello=a.Hello(site="s" * size, agent_id="x" * size))])
    with pytest.raises(grpc.RpcError) as refused:
        next(ag.AgentServiceStub(channel).Connect(hello, metadata=token("cyberport"), timeout=5))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert len(plain(refused.value)) < 200


def test_an_inventory_beyond_the_sites_declared_capacity_is_refused(
    fed: LocalFederation, channel: grpc.Channel
) -> None:
    """A fake sandy-ridge agent (its real token) claims one node of 100,000 H800s: the report is
    dropped and logged, the site gets no GPUs and no work; a truthful report is taken."""

    def report(gpus: int, model: str = "H800", nodes: int = 1) -> a.AgentMessage:
        listed = [
            types_pb2.Node(name=f"n{i}", gpu_model=model, gpus_allocatable=gpus, cpus=64, memory_gb=512)
            for i in range(nodes)
        ]
        return a.AgentMessage(inventory=a.InventoryReport(seq=time.time_ns(), nodes=listed))

    def sandy_ridge_total(messages: list[a.AgentMessage]) -> int:
        sent = [a.AgentMessage(hello=a.Hello(site="sandy-ridge", agent_id="liar")), *messages]
        stream = ag.AgentServiceStub(channel).Connect(iter(sent), metadata=token("sandy-ridge"), timeout=30)
        assert next(stream).HasField("welcome")
        time.sleep(1.0)  # the report is applied in the engine's next cycle
        with fed.client() as client:
            total = next(s for s in client.sites() if s.name == "sandy-ridge").gpus_total
        stream.cancel()
        return total

    assert sandy_ridge_total([report(100_000)]) == 0
    assert sandy_ridge_total([report(8, nodes=12)]) == 0  # 96 H800s, each node plausible
    assert sandy_ridge_total([report(24, "B200")]) == 0  # a model the site never declared
    assert sandy_ridge_total([report(2000)]) == 0  # above limits.gpus_per_node as well
    log = fed.log_tail("broker", 200)
    assert "reports 96 H800 GPUs; the site's gpu_capacity allows 32" in log
    assert "100,000 GPUs on one node is above limits.gpus_per_node" in log
    assert sandy_ridge_total([report(16)]) == 16


def test_a_spec_at_the_bound_reaches_the_agent_and_runs(fed: LocalFederation) -> None:
    """The largest accepted spec is assigned to an agent and run (not a reconnect loop); one
    byte over the bound is refused at submit."""
    from broker.spec import parse_spec

    def spec(filler: int) -> dict:
        return {
            "name": "big",
            "backend": "kubernetes",
            "kubernetes": {
                "image": "registry.example.hk/e2e:1",
                "command": ["x" * 16000] * (filler // 16000),
            },
            "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
            "env": {"FEDBROKER_SIM_SECONDS": "0.1"},
        }

    with fed.client("lion-rock-ai") as client:
        near = parse_spec(spec(60_000))
        workload = client.submit(near).workload
        deadline = time.monotonic() + 30
        while client.get(workload.id).state != 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert client.get(workload.id).state == 4  # SUCCEEDED
        from broker.client import ClientError

        with pytest.raises(ClientError) as refused:
            client.submit(parse_spec(spec(MAX_SPEC_BYTES + 16000)))
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert f"at most {MAX_SPEC_BYTES:,} are accepted" in refused.value.message


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


# The same inside a field that takes any value: before, 10 s and a 29.7 MB spec built.
RUNTIME_ENV_BOMB = (
    "name: bomb\nbackend: ray\nresources: {gpus_per_replica: 1, gpu_model: H800}\n"
    "ray:\n  entrypoint: x\n  runtime_env:\n    env_vars:\n"
    + "      a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"      {chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(6)
    )
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (RUNTIME_ENV_BOMB, "its aliases expand to more than 100,000 values"),
        ("name: " + "[" * 3000 + "]" * 3000, "nested deeper than 64 levels"),
        (
            "".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "x: 1\n",
            "nested deeper than 64 levels",
        ),
        (BOMB, "its aliases expand to more than 100,000 values"),
    ],
)
@pytest.mark.parametrize("command", ["submit", "validate"])
def test_cli_refuses_deep_yaml_and_alias_bombs_with_exit_2(
    tmp_path: Path, text: str, expected: str, command: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    env = {**os.environ, "FEDBROKER_TOKEN": DEV_TOKENS["lion-rock-ai"], "FEDBROKER_ENDPOINT": "127.0.0.1:1"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "broker", command, "-f", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert (
        expected in result.stderr
        and "Traceback" not in result.stderr
        and "RecursionError" not in result.stderr
    )
    assert time.monotonic() - started < 20


def test_restart_keeps_queued_subsidy_required_work_queued(tmp_path: Path) -> None:
    """Queued `subsidy: required` work stays QUEUED across a restart, as the running broker kept it."""
    from broker.spec import parse_spec

    fed = LocalFederation(tmp_path)
    with fed:
        fed.start_broker()  # no agents: nothing can be placed, everything waits
        spec = {
            "name": "needs-aiss",
            "backend": "ray",
            "ray": {"entrypoint": "python train.py"},
            "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
            "subsidy": "required",
        }
        with fed.client("lion-rock-ai") as client:
            ids = [client.submit(parse_spec(spec)).workload.id for _ in range(3)]
            assert {client.get(i).state for i in ids} == {1}  # QUEUED
        fed.stop("broker")
        fed.start_broker()
        with fed.client("lion-rock-ai") as client:
            after = [client.get(i) for i in ids]
        assert {x.state for x in after} == {1}, [x.message for x in after]


def test_list_pages_by_count_and_by_size(fed: LocalFederation, channel: grpc.Channel) -> None:
    """Paged by `limit` (at most 1,000) and by bytes: the largest specs a tenant may submit
    never make a List answer too large to send."""
    stub = wg.WorkloadServiceStub(channel)
    spec = ray_spec()
    spec.name = "paged"
    spec.ray.runtime_env.update({"blob": "z" * 60_000})  # near the 64 KB spec bound
    for _ in range(40):
        stub.Submit(w.SubmitRequest(spec=spec), metadata=token("harbour-robotics"), timeout=10)
    seen: list[str] = []
    page_token, pages = "", 0
    while True:
        page = stub.List(
            w.ListWorkloadsRequest(name="paged", limit=15, page_token=page_token),
            metadata=token("harbour-robotics"),
            timeout=10,
        )
        assert page.ByteSize() < 3 * 1024 * 1024 and len(page.workloads) <= 15
        seen += [x.id for x in page.workloads]
        pages += 1
        page_token = page.next_page_token
        if not page_token:
            break
    assert len(seen) == len(set(seen)) == 40 and pages >= 3
    everything = stub.List(w.ListWorkloadsRequest(limit=1_000_000), metadata=token("sre"), timeout=10)
    assert everything.next_page_token  # 40 x 60 KB: cut by size, not refused
    for bad in ("nonsense", "x" * 5000, "cDE6LTE"):
        with pytest.raises(grpc.RpcError) as refused:
            stub.List(w.ListWorkloadsRequest(page_token=bad), metadata=token("sre"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert plain(refused.value).startswith("page_token: ")
