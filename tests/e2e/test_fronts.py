"""`fedbroker serve --fronts N`: front processes serve the public port and relay to the engine.

Real processes throughout: a broker with two fronts, two simulated agents, clients over gRPC.
What a caller sees must not change with the fronts: answers, errors (code, words, trailing
metadata), streams, agents; and each process's death has a defined outcome.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from fedbroker.v1 import agent_service_pb2 as ag
from fedbroker.v1 import agent_service_pb2_grpc, types_pb2, workload_service_pb2

from broker.api.limits import CHANNEL_OPTIONS
from broker.client import Client, ClientError
from broker.localfed import DEV_TOKENS, EXAMPLES, LocalFederation
from broker.relay.protocol import PEER_SAN_KEY
from broker.spec import parse_spec

SUCCEEDED = types_pb2.WORKLOAD_STATE_SUCCEEDED
SPEC = parse_spec(
    {
        "name": "through-a-front",
        "backend": "ray",
        "ray": {"entrypoint": "python -c pass"},
        "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
        "env": {"FEDBROKER_SIM_SECONDS": "0.2"},
    }
)


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _listening_pids(port: int) -> set[int]:
    """The processes holding a listening TCP socket on `port` (from /proc: no lsof here)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    holders = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    holders.add(int(proc.name))
        except OSError:
            continue
    return holders


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    fed = LocalFederation(
        tmp_path_factory.mktemp("fronts"), broker_args=["--fronts", "2"], agent_overrides={"heartbeat_s": 0.5}
    )
    with fed:
        fed.start()
        yield fed


def test_only_the_fronts_listen_on_the_public_port(fed: LocalFederation) -> None:
    broker = fed.processes["broker"].pid
    fronts = _children(broker)
    assert len(fronts) == 2
    assert _listening_pids(fed.port) == set(fronts)  # the engine process itself is not on it
    assert "through 2 front processes" in fed.log_tail("broker", 200)


def test_the_engines_socket_is_in_a_folder_only_its_user_can_open(fed: LocalFederation) -> None:
    front = _children(fed.processes["broker"].pid)[0]
    argv = Path(f"/proc/{front}/cmdline").read_bytes().split(b"\0")
    upstream = argv[argv.index(b"--upstream") + 1].decode()
    folder = Path(upstream.removeprefix("unix:")).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(Path(upstream.removeprefix("unix:")).stat().st_mode)


def test_workloads_run_through_the_fronts_and_watch_streams_pass_through(fed: LocalFederation) -> None:
    with fed.client("harbour-robotics") as tenant:
        submitted = tenant.submit(SPEC)
        assert submitted.workload.state == types_pb2.WORKLOAD_STATE_PLACED
        assert submitted.explanation.candidates  # the whole answer came back
        states = [event.state for event in tenant.watch(submitted.workload.id, timeout=30)]
        assert states[-1] == SUCCEEDED
        assert tenant.get(submitted.workload.id).state == SUCCEEDED
        assert submitted.workload.id in {w.id for w in tenant.list()}
        # Submit is idempotent by request id through the relay as without it.
        first = tenant.submit(SPEC, request_id="fronts-once").workload.id
        assert tenant.submit(SPEC, request_id="fronts-once").workload.id == first


def test_errors_keep_their_code_words_and_trailing_metadata(fed: LocalFederation) -> None:
    with Client(fed.endpoint, "not-a-token") as stranger, pytest.raises(ClientError) as refused:
        stranger.list()
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert "token" in refused.value.message
    with grpc.insecure_channel(fed.endpoint) as channel:
        submit = channel.unary_unary("/fedbroker.v1.WorkloadService/Submit")
        metadata = (("authorization", f"Bearer {DEV_TOKENS['harbour-robotics']}"),)
        with pytest.raises(grpc.RpcError) as malformed:
            submit(b"\xff\xff\xff", metadata=metadata, timeout=5)
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid fedbroker.v1.SubmitRequest message" in malformed.value.details()
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary("/fedbroker.v1.WorkloadService/NoSuchMethod")(b"", timeout=5)
        assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
        bad = workload_service_pb2.SubmitRequest(spec=types_pb2.WorkloadSpec(name="x", backend="slurm"))
        with pytest.raises(grpc.RpcError) as invalid:
            submit(bad.SerializeToString(), metadata=metadata, timeout=5)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "backend" in invalid.value.details()


def test_a_request_near_the_size_limit_is_answered_like_a_direct_one(fed: LocalFederation) -> None:
    """A 3.9 MB request fits the public 4 MiB limit but not with its relay envelope in 4 MiB: the
    engine's socket allows more, so the caller gets the handler's answer, not a broken relay."""
    big = workload_service_pb2.SubmitRequest(request_id="x" * 3_900_000)
    with grpc.insecure_channel(fed.endpoint, options=CHANNEL_OPTIONS) as channel:
        submit = channel.unary_unary("/fedbroker.v1.WorkloadService/Submit")
        metadata = (("authorization", f"Bearer {DEV_TOKENS['harbour-robotics']}"),)
        with pytest.raises(grpc.RpcError) as refused:
            submit(big.SerializeToString(), metadata=metadata, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("request_id: 3,900,000 characters")
    with fed.client() as operator:  # the relay stream still stands: a call through it is answered
        assert {site.name for site in operator.sites()} == {"cyberport", "sandy-ridge"}


def test_a_watch_open_at_a_stop_ends_unavailable_for_the_client_to_resume(tmp_path: Path) -> None:
    """At a stop the broker ends its streams (UNAVAILABLE, "watch again") before its fronts stop,
    as without fronts: a front's grace period does not cut them with another status."""
    with LocalFederation(tmp_path, broker_args=["--fronts", "1"]) as fed:
        fed.start_broker()
        with grpc.insecure_channel(fed.endpoint) as channel:
            watch = channel.unary_stream(
                "/fedbroker.v1.WorkloadService/WatchWorkloads",
                request_serializer=workload_service_pb2.WatchWorkloadsRequest.SerializeToString,
                response_deserializer=workload_service_pb2.WorkloadEvent.FromString,
            )
            stream = watch(
                workload_service_pb2.WatchWorkloadsRequest(),
                metadata=(("authorization", f"Bearer {DEV_TOKENS['harbour-robotics']}"),),
                timeout=30,
            )
            time.sleep(0.5)  # the stream is open at the broker
            assert fed.stop("broker") == 0
            with pytest.raises(grpc.RpcError) as ended:
                for _ in stream:
                    pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "the broker is stopping" in ended.value.details()


def test_a_caller_cannot_claim_certificate_names_through_a_front(tmp_path: Path) -> None:
    """cyberport requires a certificate naming its SAN. Over plaintext a caller has none; the key
    a front uses to pass verified names along is dropped when a caller sends it, so claiming the
    name there gets nothing (the mutual-TLS tests check the same with certificates)."""
    config = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    for site in config["sites"]:
        if site["name"] == "cyberport":
            site["agent_cert_san"] = "cyberport.agents.example"
    path = tmp_path / "federation.yaml"
    path.write_text(yaml.safe_dump(config))
    with LocalFederation(tmp_path, config=path, broker_args=["--fronts", "1"]) as fed:
        fed.start_broker()
        with grpc.insecure_channel(fed.endpoint) as channel:
            stream = agent_service_pb2_grpc.AgentServiceStub(channel).Connect(
                iter([ag.AgentMessage(hello=ag.Hello(site="cyberport", agent_id="spoof"))]),
                metadata=(
                    ("authorization", f"Bearer {DEV_TOKENS['cyberport']}"),
                    (PEER_SAN_KEY, "cyberport.agents.example"),
                ),
                timeout=5,
            )
            with pytest.raises(grpc.RpcError) as refused:
                next(stream)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    assert "requires a client certificate naming 'cyberport.agents.example'" in refused.value.details()  # type: ignore[attr-defined]


def test_a_killed_front_is_replaced_and_the_port_keeps_serving(fed: LocalFederation) -> None:
    broker = fed.processes["broker"].pid
    victim, survivor = _children(broker)
    os.kill(victim, signal.SIGKILL)
    with fed.client("harbour-robotics") as tenant:  # the other front serves meanwhile
        for _ in range(5):
            assert tenant.submit(SPEC).workload.id
    fed.wait(lambda: len(_children(broker)) == 2 and victim not in _children(broker), 15, "a new front")
    assert survivor in _children(broker)
    assert "exited with -9; starting another" in fed.log_tail("broker", 200)
    fed.wait_healthy()


def test_kill_9_of_the_engine_frees_the_port_at_once(tmp_path: Path) -> None:
    with LocalFederation(tmp_path, broker_args=["--fronts", "1"]) as fed:
        fed.start_broker()
        broker = fed.processes["broker"].pid
        (front,) = _children(broker)
        fed.stop("broker", signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and Path(f"/proc/{front}").exists():
            time.sleep(0.05)
        assert not Path(f"/proc/{front}").exists(), "the front outlived its engine process"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", fed.port))  # free: a replacement broker can take it
        fed.start_broker()  # and does, from the database alone
        with fed.client() as operator:
            assert {site.name for site in operator.sites()} == {"cyberport", "sandy-ridge"}


def test_a_stopped_broker_stops_its_fronts_and_removes_its_socket(tmp_path: Path) -> None:
    with LocalFederation(tmp_path, broker_args=["--fronts", "1"]) as fed:
        fed.start_broker()
        (front,) = _children(fed.processes["broker"].pid)
        argv = Path(f"/proc/{front}/cmdline").read_bytes().split(b"\0")
        folder = Path(argv[argv.index(b"--upstream") + 1].decode().removeprefix("unix:")).parent
        assert fed.stop("broker") == 0
        assert not Path(f"/proc/{front}").exists()
        assert not folder.exists()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with LocalFederation(tmp_path, broker_args=["--fronts", "1"]) as fed:
            fed.broker_endpoints["broker"] = f"127.0.0.1:{port}"
            with pytest.raises(RuntimeError, match="already in use"):
                fed.start_broker()
