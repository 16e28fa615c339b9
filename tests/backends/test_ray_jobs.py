"""The pure half of the Ray backend: what is submitted for an attempt, and what a job's state means."""

from __future__ import annotations

import json

import pytest

from site_agents.backends.base import AttemptKey, AttemptStatus, Launch, Reason, Resources, State
from site_agents.backends.ray_inventory import RayNode, gpus_used_by_node, inventory
from site_agents.backends.ray_jobs import key_of, status_of, submission

KEY = AttemptKey("wl-1", 2)


def launch(replicas: int = 1, gpus: int = 2, nodes: tuple[str, ...] = (), model: str = "H800") -> Launch:
    return Launch(
        key=KEY,
        tenant="lion-rock-ai",
        backend="ray",
        resources=Resources(replicas, gpus, model, cpus_per_replica=4, memory_gb_per_replica=2),
        env={"TRACEPARENT": "00-ab-cd-01", "EPOCHS": "3"},
        nodes=nodes,
        entrypoint="python train.py",
        runtime_env={"pip": ["torch"], "env_vars": {"EPOCHS": "1", "MINE": "x"}},
    )


def test_one_replica_asks_for_its_gpus_on_the_entrypoint_and_pins_an_advertised_model() -> None:
    request = submission(launch(), {"H800"}, "fedbroker")
    assert request.kwargs() == {
        "submission_id": "fb-wl-1-2",
        "entrypoint": "python train.py",
        "runtime_env": {
            "pip": ["torch"],
            "env_vars": {"EPOCHS": "3", "MINE": "x", "TRACEPARENT": "00-ab-cd-01"},
        },
        "metadata": {
            "fedbroker.workload_id": "wl-1",
            "fedbroker.attempt": "2",
            "fedbroker.tenant": "lion-rock-ai",
            "fedbroker.replicas": "1",
        },
        "entrypoint_num_gpus": 2,
        "entrypoint_num_cpus": 4,
        "entrypoint_memory": 2 * 2**30,
        "entrypoint_resources": {"accelerator_type:H800": 0.001},
    }
    assert "entrypoint_resources" not in submission(launch(), {"A100"}, "fedbroker").kwargs()
    assert key_of(request.metadata) == KEY


@pytest.mark.parametrize(
    ("nodes", "strategy"), [((), "PACK"), (("a", "a"), "PACK"), (("a", "b"), "STRICT_SPREAD")]
)
def test_a_gang_runs_the_launcher_with_one_bundle_per_replica(nodes: tuple[str, ...], strategy: str) -> None:
    request = submission(launch(replicas=2, nodes=nodes), {"H800"}, "fb-ns")
    env = request.runtime_env["env_vars"]
    assert request.gang and request.entrypoint.startswith("python -c ")
    assert "entrypoint_num_gpus" not in request.kwargs()
    assert (
        json.loads(env["FEDBROKER_GANG_BUNDLES"])
        == [{"accelerator_type:H800": 0.001, "GPU": 2, "CPU": 4, "memory": 2 * 2**30}] * 2
    )
    assert (env["FEDBROKER_GANG_STRATEGY"], env["FEDBROKER_PLACEMENT_GROUP"]) == (strategy, "fb-wl-1-2")
    assert (env["FEDBROKER_ENTRYPOINT"], env["FEDBROKER_RAY_NAMESPACE"]) == ("python train.py", "fb-ns")
    assert env["TRACEPARENT"] == "00-ab-cd-01"


@pytest.mark.parametrize(
    ("status", "error_type", "exit_code", "gang_ready", "expected"),
    [
        ("PENDING", None, None, None, AttemptStatus(KEY, State.PLACED, "m")),
        ("RUNNING", None, None, None, AttemptStatus(KEY, State.RUNNING, "m", nodes=("n1",))),
        (
            "RUNNING",
            None,
            None,
            False,
            AttemptStatus(KEY, State.PLACED, "waiting for the gang's placement group", nodes=("n1",)),
        ),
        (
            "SUCCEEDED",
            None,
            0,
            None,
            AttemptStatus(KEY, State.SUCCEEDED, "exit code 0", 0, ("n1",), Reason.EXIT),
        ),
        (
            "FAILED",
            "JOB_ENTRYPOINT_COMMAND_ERROR",
            3,
            None,
            AttemptStatus(KEY, State.FAILED, "exit code 3", 3, ("n1",), Reason.EXIT),
        ),
        (
            "FAILED",
            "RUNTIME_ENV_SETUP_FAILURE",
            None,
            None,
            AttemptStatus(KEY, State.FAILED, "m", None, ("n1",), Reason.LAUNCH_ERROR),
        ),
        (
            "FAILED",
            "JOB_SUPERVISOR_ACTOR_START_TIMEOUT",
            None,
            None,
            AttemptStatus(KEY, State.FAILED, "m", None, ("n1",), Reason.NO_CAPACITY),
        ),
        (
            "FAILED",
            "JOB_SUPERVISOR_ACTOR_DIED",
            None,
            None,
            AttemptStatus(KEY, State.FAILED, "m", None, ("n1",), Reason.LOST),
        ),
        (
            "STOPPED",
            None,
            None,
            None,
            AttemptStatus(KEY, State.CANCELLED, "m", None, ("n1",), Reason.CANCELLED),
        ),
    ],
)
def test_job_states_map_to_attempt_states_with_reasons(
    status: str,
    error_type: str | None,
    exit_code: int | None,
    gang_ready: bool | None,
    expected: AttemptStatus,
) -> None:
    got = status_of(
        KEY,
        status,
        "m\nlast logs...",
        error_type=error_type,
        exit_code=exit_code,
        driver_node="n1",
        gang_ready=gang_ready,
    )
    assert got == expected


def test_inventory_counts_gpu_nodes_only_with_their_model_and_use() -> None:
    nodes = [
        RayNode(
            "b", "10.0.0.2", {"GPU": 8.0, "CPU": 64.0, "memory": 64 * 2**30, "accelerator_type:A100": 1}, {}
        ),
        RayNode(
            "a", "10.0.0.1", {"GPU": 4.0, "CPU": 16.0, "memory": 32 * 2**30}, {"zone": "x"}, is_head=True
        ),
        RayNode("c", "10.0.0.3", {"CPU": 8.0}, {}),
    ]
    used = gpus_used_by_node(
        {"data": {"clusterStatus": {"loadMetricsReport": {"usageByNode": {"a": {"GPU": [1.5, 4.0]}}}}}}
    )
    got = inventory(nodes, used, "H800", {"H800": 80.0})
    assert [(n.name, n.gpu_model, n.gpus_allocatable, n.gpus_allocated, n.gpu_memory_gb) for n in got] == [
        ("a", "H800", 4, 2, 80.0),  # a half-used GPU is not free for a whole-GPU replica
        ("b", "A100", 8, 0, 0.0),
    ]
    assert (got[0].cpus, got[0].memory_gb) == (16.0, 32.0)
    assert got[0].labels == {"zone": "x", "ray.io/node-ip": "10.0.0.1", "ray.io/head-node": "true"}
