"""The simulated backend alone: placement on nodes, scripted outcomes, cancel, idempotency. No network."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TypeVar

import pytest

from site_agents.backends.base import AttemptKey, AttemptStatus, Launch, Resources, State
from site_agents.backends.simulated import SimulatedBackend
from site_agents.config import NodeGroup

T = TypeVar("T")


def group(prefix: str, count: int, model: str = "H800", gpus: int = 8) -> NodeGroup:
    return NodeGroup(
        count=count,
        name_prefix=prefix,
        gpu_model=model,
        gpus=gpus,
        gpu_memory_gb=80,
        cpus=128,
        memory_gb=1024,
    )


def launch(
    workload_id: str,
    attempt: int = 1,
    *,
    replicas: int = 1,
    gpus: int = 8,
    model: str = "H800",
    nodes: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    hours: float | None = None,
    backend: str = "ray",
) -> Launch:
    return Launch(
        key=AttemptKey(workload_id, attempt),
        tenant="t",
        backend=backend,
        resources=Resources(replicas=replicas, gpus_per_replica=gpus, gpu_model=model),
        env=dict(env if env is not None else {"FEDBROKER_SIM_SECONDS": "60"}),
        nodes=tuple(nodes),
        estimated_hours=hours,
    )


def run(test: Callable[[], Coroutine[object, object, T]]) -> T:
    return asyncio.run(test())


def drain(backend: SimulatedBackend) -> list[AttemptStatus]:
    """The changes queued so far, without waiting."""
    queue = backend._changes
    return [queue.get_nowait() for _ in range(queue.qsize())]


async def allocated(backend: SimulatedBackend) -> dict[str, int]:
    return {n.name: n.gpus_allocated for n in await backend.nodes()}


def test_nodes_come_from_the_groups_in_name_order() -> None:
    async def main() -> None:
        backend = SimulatedBackend([group("b", 1, "A100-80GB", 4), group("a", 11)])
        nodes = await backend.nodes()
        # Natural order: a-2 before a-10, so first fit fills nodes the way a person reads them.
        assert [n.name for n in nodes] == [f"a-{i}" for i in range(11)] + ["b-0"]
        assert (nodes[-1].gpu_model, nodes[-1].gpus_allocatable, nodes[-1].gpus_allocated) == (
            "A100-80GB",
            4,
            0,
        )

    run(main)


@pytest.mark.parametrize(
    ("hint", "replicas", "gpus", "expected"),
    [
        (["n-2", "n-3"], 2, 8, ("n-2", "n-3")),  # the broker's hint, when the gang fits there
        (["n-0"], 2, 8, ("n-1", "n-2")),  # hint of the wrong length: first fit
        (["n-0", "n-9"], 2, 8, ("n-1", "n-2")),  # a node that does not exist: first fit
        ([], 1, 4, ("n-1",)),  # no hint: first fit by name (n-0 is full)
        ([], 2, 4, ("n-1", "n-1")),  # two replicas may share a node that has room for both
    ],
)
def test_placement_follows_the_hint_else_first_fit(
    hint: list[str], replicas: int, gpus: int, expected: tuple[str, ...]
) -> None:
    async def main() -> None:
        backend = SimulatedBackend([group("n", 4)])
        await backend.launch(launch("busy", nodes=["n-0"]))
        await backend.launch(launch("w", replicas=replicas, gpus=gpus, nodes=hint))
        statuses = drain(backend)
        assert statuses[-1] == AttemptStatus(AttemptKey("w", 1), State.RUNNING, nodes=expected)

    run(main)


def test_no_room_fails_with_what_was_needed() -> None:
    async def main() -> None:
        backend = SimulatedBackend([group("n", 2), group("a", 4, "A100-80GB")])
        await backend.launch(launch("w", replicas=2, gpus=8))
        await backend.launch(launch("x", replicas=1, gpus=8))
        await backend.launch(launch("y", replicas=1, gpus=2, model="L40S"))
        failed = [s for s in drain(backend) if s.state is State.FAILED]
        assert [(s.key.workload_id, s.message) for s in failed] == [
            ("x", "no room: needs 1x8 H800"),
            ("y", "no room: needs 1x2 L40S"),
        ]
        assert backend.starts == [AttemptKey("w", 1)]

    run(main)


def test_run_time_is_scaled_estimate_or_the_env_override() -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        backend = SimulatedBackend([group("n", 4)], time_scale=0.001, sleep=fake_sleep)
        await backend.launch(launch("est", hours=2, env={}))
        await backend.launch(launch("none", env={}))  # no estimate: one hour
        await backend.launch(launch("env", hours=2, env={"FEDBROKER_SIM_SECONDS": "0.25"}))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    run(main)
    assert slept == pytest.approx([7.2, 3.6, 0.25])


@pytest.mark.parametrize(
    ("env", "state", "message", "exit_code"),
    [
        ({}, State.SUCCEEDED, "exit code 0", 0),
        ({"FEDBROKER_SIM_EXIT_CODE": "3"}, State.FAILED, "exit code 3", 3),
        (
            {"FEDBROKER_SIM_EXIT_CODE": "x"},
            State.FAILED,
            "FEDBROKER_SIM_EXIT_CODE must be an integer, got 'x'",
            None,
        ),
        (
            {"FEDBROKER_SIM_SECONDS": "-1"},
            State.FAILED,
            "FEDBROKER_SIM_SECONDS must be a number of seconds >= 0, got '-1'",
            None,
        ),
    ],
)
def test_the_env_scripts_the_outcome_and_gpus_are_freed(
    env: dict[str, str], state: State, message: str, exit_code: int | None
) -> None:
    async def main() -> None:
        backend = SimulatedBackend([group("n", 1)])
        await backend.launch(launch("w", env={"FEDBROKER_SIM_SECONDS": "0", **env}))
        changes = backend.changes()
        while (last := await anext(changes)).state is not state:
            pass
        assert (last.message, last.exit_code) == (message, exit_code)
        assert await allocated(backend) == {"n-0": 0}

    run(main)


def test_cancel_stops_that_attempt_only_and_frees_its_gpus() -> None:
    async def main() -> None:
        backend = SimulatedBackend([group("n", 2)])
        await backend.launch(launch("w", 1))
        await backend.launch(launch("w", 2))
        assert await allocated(backend) == {"n-0": 8, "n-1": 8}
        await backend.cancel(AttemptKey("w", 1))
        await backend.cancel(AttemptKey("w", 1))  # again: a no-op
        await backend.cancel(AttemptKey("nope", 1))  # unknown: a no-op
        assert await allocated(backend) == {"n-0": 0, "n-1": 8}
        ends = [(s.key.attempt, s.state, s.message) for s in drain(backend) if s.state.terminal]
        assert ends == [(1, State.CANCELLED, "cancelled")]
        await asyncio.sleep(0)  # the cancelled timer must not report anything later

    run(main)


def test_launch_is_idempotent_by_workload_and_attempt() -> None:
    async def main() -> None:
        backend = SimulatedBackend([group("n", 2)])
        await backend.launch(launch("w", 1))
        await backend.launch(launch("w", 1))
        await backend.launch(launch("w", 2))
        assert backend.starts == [AttemptKey("w", 1), AttemptKey("w", 2)]
        assert await allocated(backend) == {"n-0": 8, "n-1": 8}

    run(main)


def test_an_ended_attempt_sent_again_is_not_run_again() -> None:
    async def main() -> None:
        backend = SimulatedBackend([group("n", 1)])
        await backend.launch(launch("w", env={"FEDBROKER_SIM_SECONDS": "0"}))
        changes = backend.changes()
        while not (await anext(changes)).state.terminal:
            pass
        await backend.launch(launch("w", env={"FEDBROKER_SIM_SECONDS": "0"}))
        assert backend.starts == [AttemptKey("w", 1)]

    run(main)


def test_attempt_keys_name_cluster_objects_stably() -> None:
    assert AttemptKey("w-123", 2).resource_name() == "fb-w-123-2"
    odd = AttemptKey("Whisper_Finetune/" + "x" * 80, 1).resource_name()
    assert len(odd) <= 63 and odd.startswith("fb-whisper-finetune-x") and odd.endswith("-1")
    assert odd != AttemptKey("Whisper_Finetune/" + "x" * 80, 2).resource_name()
    assert AttemptKey("A", 1).resource_name() != AttemptKey("a", 1).resource_name()
