"""Fuzzing (hypothesis): the YAML loaders and every gRPC request message, valid-shaped and
raw bytes, against a real broker process. Never a crash, never UNKNOWN or INTERNAL for bad
input; INVALID_ARGUMENT names the field ("field: ..." or "request: ...").

A short run by default; `FEDBROKER_FUZZ_EXAMPLES=7000` for the long one (>= 100,000 cases).
Each case is counted in tests/security/.fuzz-count when FEDBROKER_FUZZ_COUNT names a file.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fedbroker.v1 import agent_service_pb2 as a
from fedbroker.v1 import operator_service_pb2, site_service_pb2, usage_service_pb2
from fedbroker.v1 import workload_service_pb2 as w
from hypothesis import given
from hypothesis import strategies as st

from broker.api.limits import MAX_ERROR_CHARS
from broker.config import parse_federation
from broker.localfed import LocalFederation
from broker.spec import parse_spec
from broker.validation import InvalidInput, parse_yaml
from site_agents.config import parse_agent_config
from tests.security.fuzz import FUZZ, messages, yaml_documents
from tests.security.harness import bounded_federation, token

CASES: Counter[str] = Counter()
REQUESTS = {
    ("WorkloadService", "Submit"): w.SubmitRequest,
    ("WorkloadService", "Get"): w.GetWorkloadRequest,
    ("WorkloadService", "List"): w.ListWorkloadsRequest,
    ("WorkloadService", "Cancel"): w.CancelWorkloadRequest,
    ("WorkloadService", "Explain"): w.ExplainRequest,
    ("WorkloadService", "ListEvents"): w.ListEventsRequest,
    ("SiteService", "ListSites"): site_service_pb2.ListSitesRequest,
    ("UsageService", "GetUsage"): usage_service_pb2.GetUsageRequest,
    ("OperatorService", "SetPlacementPaused"): operator_service_pb2.SetPlacementPausedRequest,
}
STREAMS = {
    ("WorkloadService", "Watch"): w.WatchWorkloadRequest,
    ("WorkloadService", "WatchWorkloads"): w.WatchWorkloadsRequest,
    ("WorkloadService", "Logs"): w.LogsRequest,
}
NEVER = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
FIELD_FIRST = re.compile(r"^[a-z_][a-z0-9_.\[\]]*: ")


@pytest.fixture(scope="module", autouse=True)
def count_cases() -> Iterator[None]:
    yield
    path = os.environ.get("FEDBROKER_FUZZ_COUNT")
    if path:
        previous = int(Path(path).read_text() or 0) if Path(path).exists() else 0
        Path(path).write_text(str(previous + sum(CASES.values())))
    print(f"\nfuzz cases: {sum(CASES.values()):,} {dict(CASES)}")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("fuzz")
    limits = {"submits_per_s": 10_000.0, "submit_burst": 10_000}
    federation = LocalFederation(root, config=bounded_federation(root, limits))
    with federation:
        federation.start_broker()
        yield federation
        assert federation.processes["broker"].poll() is None, "the broker died"
        log = federation.log_tail("broker", 100_000)
        assert "Traceback" not in log, log[-4000:]


@pytest.fixture(scope="module")
def channel(fed: LocalFederation) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(fed.endpoint) as ch:
        yield ch


def judged(error: grpc.RpcError, what: str) -> None:
    code, details = error.code(), error.details() or ""
    assert code not in NEVER, f"{what}: {code} {details[:500]}"
    assert len(details) <= MAX_ERROR_CHARS and "<class" not in details, details[:500]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert FIELD_FIRST.match(details) or details.startswith("spec: "), details[:300]


def call_unary(channel: grpc.Channel, key: tuple[str, str], body: bytes, who: str) -> None:
    CASES[f"{key[1]}"] += 1
    call = channel.unary_unary(
        f"/fedbroker.v1.{key[0]}/{key[1]}", request_serializer=None, response_deserializer=None
    )
    try:
        call(body, metadata=token(who), timeout=10)
    except grpc.RpcError as error:
        judged(error, key[1])


def call_stream(channel: grpc.Channel, key: tuple[str, str], body: bytes, who: str) -> None:
    CASES[f"{key[1]}"] += 1
    call = channel.unary_stream(
        f"/fedbroker.v1.{key[0]}/{key[1]}", request_serializer=None, response_deserializer=None
    )
    stream = call(body, metadata=token(who), timeout=0.1)
    try:
        for _ in stream:
            pass
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:  # a valid watch streams on
            judged(error, key[1])


@pytest.mark.parametrize("key", list(REQUESTS), ids=lambda k: k[1])
def test_unary_requests_valid_shaped(channel: grpc.Channel, key: tuple[str, str]) -> None:
    @FUZZ
    @given(messages(REQUESTS[key]), st.sampled_from(["lion-rock-ai", "sre", "cyberport"]))
    def check(message: object, who: str) -> None:
        call_unary(channel, key, message.SerializeToString(), who)  # type: ignore[attr-defined]

    check()


@pytest.mark.parametrize("key", list(REQUESTS) + list(STREAMS), ids=lambda k: k[1])
def test_requests_raw_bytes(channel: grpc.Channel, key: tuple[str, str]) -> None:
    @FUZZ
    @given(st.binary(max_size=256))
    def check(body: bytes) -> None:
        if key in STREAMS:
            call_stream(channel, key, body, "sre")
        else:
            call_unary(channel, key, body, "sre")

    check()


@pytest.mark.parametrize("key", list(STREAMS), ids=lambda k: k[1])
def test_stream_requests_valid_shaped(channel: grpc.Channel, key: tuple[str, str]) -> None:
    @FUZZ
    @given(messages(STREAMS[key]), st.sampled_from(["lion-rock-ai", "sre"]))
    def check(message: object, who: str) -> None:
        call_stream(channel, key, message.SerializeToString(), who)  # type: ignore[attr-defined]

    check()


def test_agent_stream(channel: grpc.Channel) -> None:
    """A site's token, a Hello (its own site, or fuzzed), then fuzzed messages or raw bytes."""
    connect = channel.stream_stream(
        "/fedbroker.v1.AgentService/Connect", request_serializer=None, response_deserializer=None
    )
    hellos = st.one_of(
        st.just(a.AgentMessage(hello=a.Hello(site="cyberport", agent_id="fuzz")).SerializeToString()),
        messages(a.AgentMessage).map(lambda m: m.SerializeToString()),
        st.binary(max_size=64),
    )
    following = st.lists(
        st.one_of(messages(a.AgentMessage).map(lambda m: m.SerializeToString()), st.binary(max_size=64)),
        max_size=4,
    )

    @FUZZ
    @given(hellos, following)
    def check(hello: bytes, rest: list[bytes]) -> None:
        CASES["Connect"] += 1
        stream = connect(iter([hello, *rest]), metadata=token("cyberport"), timeout=0.5)
        try:
            for _ in stream:
                pass
        except grpc.RpcError as error:
            if error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                judged(error, "Connect")

    check()


LOADERS = {
    "federation": parse_federation,
    "agent": parse_agent_config,
    "workload": parse_spec,
}


@pytest.mark.parametrize("kind", list(LOADERS))
def test_yaml_loaders(kind: str) -> None:
    """Any text: a value or InvalidInput naming the problem, never another exception."""

    @FUZZ
    @given(yaml_documents)
    def check(text: str) -> None:
        CASES[f"yaml-{kind}"] += 1
        try:
            LOADERS[kind](parse_yaml(text, "fuzz.yaml"), "fuzz.yaml")
        except InvalidInput as error:
            assert error.problems and all(p for p in error.problems)

    check()
