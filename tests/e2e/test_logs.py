"""`fedbroker logs` end to end on the simulated backend: real broker and agent processes on loopback.

The broker relays an attempt's lines from the agent of the site that ran it, over the
agent's stream; these tests read them through the CLI and the SDK, and check who may
read what and each error's words. (The Ray and Kubernetes backends: tests/backends/test_broker_e2e.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from broker.client import ClientError
from broker.localfed import DEV_TOKENS, LocalFederation
from broker.spec import load_spec


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    federation = LocalFederation(
        tmp_path_factory.mktemp("logs"),
        agent_overrides={"heartbeat_s": 0.5, "backend": {"time_scale": 0.0001}},
    )
    with federation:
        federation.start()
        yield federation


def cli(fed: LocalFederation, *args: str, who: str = "lion-rock-ai") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FEDBROKER_ENDPOINT": fed.endpoint, "FEDBROKER_TOKEN": DEV_TOKENS[who]}
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env, timeout=120
    )


def submit(fed: LocalFederation, tmp_path: Path, seconds: float, **changes: Any) -> str:
    data: dict[str, Any] = {
        "name": f"logs-{time.monotonic_ns()}",
        "backend": "kubernetes",
        "kubernetes": {"image": "registry.example.hk/e2e:1"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
        "sites": ["sandy-ridge"],
        "env": {"FEDBROKER_SIM_SECONDS": str(seconds)},
        **changes,
    }
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    with fed.client("lion-rock-ai") as client:
        return client.submit(load_spec(path)).workload.id


def finish(fed: LocalFederation, workload_id: str) -> None:
    with fed.client() as sre:
        for _ in sre.watch(workload_id, timeout=60):
            pass


def test_logs_of_a_finished_attempt_with_tail_and_json(fed: LocalFederation, tmp_path: Path) -> None:
    workload_id = submit(fed, tmp_path, 0.2)
    finish(fed, workload_id)
    result = cli(fed, "logs", workload_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{workload_id}#1" in lines[0] and "accepted" in lines[0]
    assert lines[-1] == "succeeded: exit code 0"

    tail = cli(fed, "logs", workload_id, "--tail", "1", "-o", "json")
    assert tail.returncode == 0, tail.stderr
    assert [json.loads(line) for line in tail.stdout.splitlines()] == [
        {"attempt": 1, "site": "sandy-ridge", "line": "succeeded: exit code 0"}
    ]


def test_follow_ends_when_the_attempt_ends(fed: LocalFederation, tmp_path: Path) -> None:
    workload_id = submit(fed, tmp_path, 3.0)
    with fed.client("lion-rock-ai") as client:
        deadline = time.monotonic() + 30
        while client.get(workload_id).state != 3 and time.monotonic() < deadline:  # RUNNING
            time.sleep(0.1)
        started = time.monotonic()
        lines = [line for batch in client.logs(workload_id, follow=True, timeout=60) for line in batch.lines]
        followed_s = time.monotonic() - started
    assert lines[-1] == "succeeded: exit code 0"
    assert 1.0 < followed_s < 30  # it waited for the end, and ended with it


def test_each_attempt_keeps_its_own_logs(fed: LocalFederation, tmp_path: Path) -> None:
    workload_id = submit(fed, tmp_path, 0.1, max_attempts=2, env={"FEDBROKER_SIM_EXIT_CODE": "3"})
    finish(fed, workload_id)
    first = cli(fed, "logs", workload_id, "--attempt", "1")
    second = cli(fed, "logs", workload_id)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert f"{workload_id}#1" in first.stdout and f"{workload_id}#2" in second.stdout
    assert first.stdout.splitlines()[-1] == "failed: exit code 3"

    missing = cli(fed, "logs", workload_id, "--attempt", "3")
    assert missing.returncode == 1
    assert f"NOT_FOUND: workload {workload_id} has no attempt 3: it has had 2" in missing.stderr


def test_a_tenant_reads_only_its_own_workloads_logs(fed: LocalFederation, tmp_path: Path) -> None:
    workload_id = submit(fed, tmp_path, 0.1)
    finish(fed, workload_id)
    other = cli(fed, "logs", workload_id, who="harbour-robotics")
    assert other.returncode == 1 and f"NOT_FOUND: no workload '{workload_id}'" in other.stderr
    assert cli(fed, "logs", workload_id, who="sre").returncode == 0  # an operator reads any
    with pytest.raises(ClientError) as caught, fed.client("lion-rock-ai") as client:
        list(client.logs("wl-000000000000"))
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_a_site_whose_agent_is_away_is_unreachable(fed: LocalFederation, tmp_path: Path) -> None:
    workload_id = submit(fed, tmp_path, 0.1)
    finish(fed, workload_id)
    following = submit(fed, tmp_path, 60.0)
    with fed.client("lion-rock-ai") as client:
        stream = client.logs(following, follow=True, timeout=60)
        assert next(stream).lines  # following: what the attempt logged so far has come
        fed.stop("agent-sandy-ridge")
        with pytest.raises(ClientError) as interrupted:
            list(stream)
    assert interrupted.value.code == grpc.StatusCode.UNAVAILABLE
    assert "site sandy-ridge's agent disconnected while sending the logs" in interrupted.value.message
    try:
        with fed.client("lion-rock-ai") as client:
            deadline = time.monotonic() + 20
            while True:  # until the broker has seen the stream end
                try:
                    list(client.logs(workload_id, timeout=30))
                except ClientError as error:
                    assert error.code == grpc.StatusCode.UNAVAILABLE
                    assert "site sandy-ridge is unreachable" in error.message
                    break
                assert time.monotonic() < deadline, "the broker still relays from a stopped agent"
                time.sleep(0.2)
    finally:
        fed.start_agent("sandy-ridge")
        fed.wait_healthy()
