"""End to end with real processes: `fedbroker serve` and two `fedbroker agent`s on loopback.

Driven the way users drive it: the CLI with `-o json`, and the gRPC API through the SDK.
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
from fedbroker.v1 import types_pb2, workload_service_pb2, workload_service_pb2_grpc

from broker.client import Client, ClientError
from broker.lifecycle import TERMINAL
from broker.localfed import DEV_TOKENS, EXAMPLES, LocalFederation
from broker.spec import parse_spec


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    federation = LocalFederation(
        tmp_path_factory.mktemp("fed"),
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


def cli_json(fed: LocalFederation, *args: str, who: str = "lion-rock-ai") -> Any:
    result = cli(fed, *args, "-o", "json", who=who)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def workload_file(tmp_path: Path, **changes: Any) -> Path:
    data: dict[str, Any] = {
        "name": "e2e",
        "backend": "kubernetes",
        "kubernetes": {"image": "registry.example.hk/e2e:1"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
        "env": {"FEDBROKER_SIM_SECONDS": "0.5"},
    }
    data.update(changes)
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_submit_watch_get_on_the_allowed_site(fed: LocalFederation, tmp_path: Path) -> None:
    path = workload_file(tmp_path, name="allowed-only", sites=["sandy-ridge"])
    submitted = cli_json(fed, "submit", "-f", str(path))
    assert submitted["state"] == "PLACED" and submitted["site"] == "sandy-ridge"
    assert set(submitted) >= {"id", "name", "tenant", "state", "site", "attempt", "trace_id", "message"}

    watched = cli(fed, "watch", submitted["id"], "-o", "json")
    assert watched.returncode == 0, watched.stderr
    states = [json.loads(line)["state"] for line in watched.stdout.splitlines()]
    assert states[-1] == "SUCCEEDED" and "RUNNING" in states

    final = cli_json(fed, "get", submitted["id"])
    assert (final["state"], final["site"], final["tenant"], final["attempt"]) == (
        "SUCCEEDED",
        "sandy-ridge",
        "lion-rock-ai",
        1,
    )
    listed = cli_json(fed, "list", who="sre")
    assert submitted["id"] in [w["id"] for w in listed]
    explained = cli_json(fed, "explain", submitted["id"])
    cyberport = next(c for c in explained["candidates"] if c["site"] == "cyberport")
    assert explained["chosen"] == "sandy-ridge" and not cyberport["eligible"] and cyberport["reasons"]


def test_grpc_api_places_by_gpu_model_and_runs_to_success(fed: LocalFederation) -> None:
    spec = parse_spec(
        {
            "name": "l40s-job",
            "backend": "ray",
            "ray": {"entrypoint": "python embed.py"},
            "resources": {"gpus_per_replica": 4, "gpu_model": "L40S"},
            "env": {"FEDBROKER_SIM_SECONDS": "0.5"},
        }
    )
    with fed.client("lion-rock-ai") as client:
        response = client.submit(spec)
        assert response.workload.site == "sandy-ridge"  # the only site with L40S
        states = [
            types_pb2.WorkloadState.Name(e.state) for e in client.watch(response.workload.id, timeout=60)
        ]
        assert states[-1] == "WORKLOAD_STATE_SUCCEEDED"


def test_failing_workload_is_retried_then_failed(fed: LocalFederation, tmp_path: Path) -> None:
    path = workload_file(
        tmp_path,
        name="always-fails",
        max_attempts=2,
        env={"FEDBROKER_SIM_SECONDS": "0.2", "FEDBROKER_SIM_EXIT_CODE": "3"},
    )
    submitted = cli_json(fed, "submit", "-f", str(path))
    assert cli(fed, "watch", submitted["id"]).returncode == 1
    final = cli_json(fed, "get", submitted["id"])
    assert final["state"] == "FAILED" and final["attempt"] == 2 and "exit code 3" in final["message"]


def test_wrong_token_is_unauthenticated(fed: LocalFederation) -> None:
    with Client(fed.endpoint, "not-a-token") as client, pytest.raises(ClientError) as caught:
        client.list()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    env = {**os.environ, "FEDBROKER_ENDPOINT": fed.endpoint, "FEDBROKER_TOKEN": "not-a-token"}
    result = subprocess.run(
        [sys.executable, "-m", "broker", "sites"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1 and "UNAUTHENTICATED" in result.stderr


def test_malformed_workload_is_invalid_argument_naming_the_field(
    fed: LocalFederation, tmp_path: Path
) -> None:
    # Straight to the API, past the CLI's own validation.
    bad = types_pb2.WorkloadSpec(
        name="bad",
        backend="ray",
        ray=types_pb2.RaySpec(entrypoint="python x.py"),
        resources=types_pb2.Resources(gpus_per_replica=-2, gpu_model="H800"),
    )
    with grpc.insecure_channel(fed.endpoint) as channel:
        stub = workload_service_pb2_grpc.WorkloadServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Submit(
                workload_service_pb2.SubmitRequest(spec=bad),
                metadata=[("authorization", f"Bearer {DEV_TOKENS['lion-rock-ai']}")],
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resources.gpus_per_replica: must be > 0" in caught.value.details()

    # Through the CLI: refused before it is sent, with the file and the field named.
    path = workload_file(tmp_path, name="bad-cli", subsidy="sometimes")
    result = cli(fed, "submit", "-f", str(path))
    assert (
        result.returncode == 2 and "subsidy: must be one of" in result.stderr and str(path) in result.stderr
    )


def test_workload_that_can_never_fit_is_refused_with_each_sites_reason(
    fed: LocalFederation, tmp_path: Path
) -> None:
    path = workload_file(tmp_path, name="too-big", resources={"gpus_per_replica": 8, "gpu_model": "B200"})
    result = cli(fed, "submit", "-f", str(path))
    assert result.returncode == 1
    assert "FAILED_PRECONDITION" in result.stderr
    assert "cyberport:" in result.stderr and "sandy-ridge:" in result.stderr


def test_cancel_a_running_workload(fed: LocalFederation, tmp_path: Path) -> None:
    path = workload_file(tmp_path, name="long-one", env={"FEDBROKER_SIM_SECONDS": "60"})
    submitted = cli_json(fed, "submit", "-f", str(path))
    cancelled = cli_json(fed, "cancel", submitted["id"])
    assert cancelled["state"] == "CANCELLED"

    def freed() -> bool:
        with fed.client() as sre:
            return all(s.gpus_allocated == 0 and s.gpus_reserved == 0 for s in sre.sites())

    fed.wait(freed, 20, "the cancelled workload's GPUs to be freed")


def test_sites_shows_health_and_gpus(fed: LocalFederation) -> None:
    sites = {s["name"]: s for s in cli_json(fed, "sites", who="sre")}
    assert sites["cyberport"]["healthy"] and sites["sandy-ridge"]["healthy"]
    assert sites["cyberport"]["gpus_total"] == 32 and sites["sandy-ridge"]["gpus_total"] == 48


def test_agent_with_a_wrong_token_exits_with_the_reason(fed: LocalFederation) -> None:
    fed.start_agent("cyberport", token="dev-agent-sandy-ridge")  # a real token, of another site
    name = "agent-cyberport"
    process = fed.processes[name]
    process.wait(30)
    assert process.returncode != 0
    assert "PERMISSION_DENIED" in fed.log_tail(name) or "not 'cyberport'" in fed.log_tail(name)
    fed.processes.pop(name)
    fed.start_agent("cyberport")  # the right one again, for the tests after
    fed.wait_healthy()


def test_broker_restart_keeps_every_workload(fed: LocalFederation, tmp_path: Path) -> None:
    long_running = cli_json(
        fed, "submit", "-f", str(workload_file(tmp_path, name="survivor", env={"FEDBROKER_SIM_SECONDS": "4"}))
    )
    with fed.client() as sre:
        before = {w.id: w for w in sre.list()}
    fed.stop("broker")
    fed.start_broker()
    with fed.client() as sre:
        after = {w.id: w for w in sre.list()}
    assert set(after) == set(before)
    for workload_id, workload in before.items():
        if workload.state in (types_pb2.WORKLOAD_STATE_SUCCEEDED, types_pb2.WORKLOAD_STATE_FAILED):
            assert after[workload_id].state == workload.state
    # The agents reconnect and the workload that ran through the restart finishes.
    fed.wait_healthy(timeout=30)
    deadline = time.monotonic() + 60
    while cli_json(fed, "get", long_running["id"])["state"] != "SUCCEEDED":
        assert time.monotonic() < deadline, cli_json(fed, "get", long_running["id"])
        time.sleep(0.3)


@pytest.mark.parametrize(
    ("tenant", "filename", "site"),
    [
        ("lion-rock-ai", "whisper-cantonese-finetune.yaml", "cyberport"),  # its data and its subsidy
        ("lion-rock-ai", "legal-rag-embeddings.yaml", "sandy-ridge"),  # the only L40S
        ("harbour-robotics", "lidar-segmentation.yaml", "sandy-ridge"),  # 15 TB of data there
        ("lion-rock-ai", "llm-eval-subsidised.yaml", "cyberport"),  # subsidy required: only AISS site
        ("harbour-robotics", "llm-eval-subsidised.yaml", None),  # no subsidy program: refused
    ],
)
def test_example_workloads_go_where_the_design_says(
    fed: LocalFederation, tenant: str, filename: str, site: str | None
) -> None:
    result = cli(
        fed, "submit", "-f", str(EXAMPLES / "workloads" / filename), "--dry-run", "-o", "json", who=tenant
    )
    explanation = json.loads(result.stdout)
    assert explanation["chosen"] == site, explanation
    # A dry run that would be refused exits 1, like the real submit (and still explains why).
    assert result.returncode == (0 if site else 1), result.stderr
    if site is None:
        assert explanation["summary"].startswith("refused")
        assert all(c["reasons"] for c in explanation["candidates"])


def test_a_second_broker_on_a_taken_port_refuses_to_start(fed: LocalFederation, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'other.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "serve",
            "--config",
            str(fed.config),
            "--db",
            db,
            "--listen",
            fed.endpoint,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and f"cannot listen on {fed.endpoint}" in result.stderr


def test_usage_reports_what_each_tenant_and_program_paid(fed: LocalFederation, tmp_path: Path) -> None:
    path = workload_file(
        tmp_path, name="subsidised", subsidy="required", env={"FEDBROKER_SIM_SECONDS": "0.5"}
    )
    submitted = cli_json(fed, "submit", "-f", str(path))
    assert submitted["site"] == "cyberport"  # the only site honouring AISS
    assert cli(fed, "watch", submitted["id"]).returncode == 0
    report = cli_json(fed, "usage", who="sre")
    subsidised = [r for r in report["usage"] if r["tenant"] == "lion-rock-ai" and r["program"] == "aiss"]
    assert subsidised and subsidised[0]["site"] == "cyberport"
    row = subsidised[0]
    # The row sums every settlement of this tenant's at cyberport in the module's federation,
    # each rounded to the cent on its own: the 70% share is exact to half a cent per settlement.
    ran_there = [
        w
        for w in cli_json(fed, "list", who="sre")
        if w["tenant"] == "lion-rock-ai" and w["site"] == "cyberport" and w["state"] in TERMINAL
    ]
    assert submitted["id"] in [w["id"] for w in ran_there]
    cents = 0.005 * len(ran_there) + 1e-9
    assert row["cost_hkd"] > 0 and row["program_hkd"] == pytest.approx(0.7 * row["cost_hkd"], abs=cents)
    budget = next(b for b in report["budgets"] if b["tenant"] == "lion-rock-ai")
    assert budget["spent_hkd"] == pytest.approx(row["program_hkd"], abs=0.01)
    assert budget["left_hkd"] == pytest.approx(
        500000 - budget["spent_hkd"] - budget["reserved_hkd"], abs=0.01
    )
    mine = cli_json(fed, "usage", who="harbour-robotics")
    assert all(r["tenant"] == "harbour-robotics" for r in mine["usage"]) and mine["budgets"] == []
