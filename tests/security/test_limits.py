"""Per-tenant limits (federation.yaml `limits`) against a real broker: RESOURCE_EXHAUSTED with
a message, one tenant's limit leaving another's calls alone."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest

from broker.client import ClientError
from broker.localfed import LocalFederation
from broker.spec import parse_spec
from tests.security.harness import bounded_federation

SPEC = parse_spec(
    {
        "name": "limited",
        "backend": "ray",
        "ray": {"entrypoint": "python x.py"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
    }
)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("limits")
    limits = {"submits_per_s": 4.0, "submit_burst": 3, "queued_per_tenant": 5}
    federation = LocalFederation(root, config=bounded_federation(root, limits))
    with federation:
        federation.start_broker()  # no agents: every workload stays queued
        yield federation


def test_submits_per_second_per_tenant(fed: LocalFederation) -> None:
    with fed.client("harbour-robotics") as client:
        for _ in range(3):
            client.submit(SPEC)  # the burst
        with pytest.raises(ClientError) as refused:
            client.submit(SPEC)
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tenant harbour-robotics submits too fast: at most 4 per second" in refused.value.message
        with fed.client("lion-rock-ai") as other:
            other.submit(SPEC)  # another tenant's bucket is its own
        time.sleep(0.3)  # a token back
        client.submit(SPEC)


def test_queued_workloads_per_tenant(fed: LocalFederation) -> None:
    with fed.client("lion-rock-ai") as client:
        queued = len(client.list(states=["QUEUED"]))
        while queued < 5:
            try:
                client.submit(SPEC)
                queued += 1
            except ClientError as error:
                assert "submits too fast" in error.message
                time.sleep(0.3)
        time.sleep(0.3)
        with pytest.raises(ClientError) as refused:
            client.submit(SPEC)
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "tenant lion-rock-ai has 5 workloads queued, the most allowed (5)" in refused.value.message
        cancelled = client.list(states=["QUEUED"])[0]
        client.cancel(cancelled.id)
        time.sleep(0.3)
        client.submit(SPEC)  # room again
