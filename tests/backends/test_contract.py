"""The one backend contract, run against the simulated backend, a real Ray head and the Kubernetes stand-in.

Each test names what a backend promises the agent: inventory, launch, idempotent
re-launch, state transitions, success, failure with its reason, cancel, logs,
and recovery after an agent restart. Real parts: Ray runs real jobs (tiny
`python -c` entrypoints) on a local head; Kubernetes is kmock's API emulator with
the test Job controller of `kube_controller.py` playing the cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from site_agents.backends.base import AttemptKey, AttemptStatus, Reason, State
from site_agents.errors import AttemptNotFound

from .conftest import SiteFactory
from .sites import GPU_MODEL, new_id, statuses_until, wait_nodes

ORDER = [State.PLACED, State.RUNNING, State.SUCCEEDED]


def run(main: Callable[[], Awaitable[None]], timeout: float = 90) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await main()

    asyncio.run(bounded())


def ended(status: AttemptStatus) -> bool:
    return status.state.terminal


def running(status: AttemptStatus) -> bool:
    return status.state is State.RUNNING


def test_inventory_lists_the_gpu_nodes_and_what_runs_on_them(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            nodes = await site.backend.nodes()
            assert sum(n.gpus_allocatable for n in nodes) == site.gpus
            assert {n.gpu_model for n in nodes} == {GPU_MODEL}
            assert all(n.cpus > 0 and n.memory_gb > 0 for n in nodes)
            before = sum(n.gpus_allocated for n in nodes)
            launch = site.workload(new_id("inv"), seconds=60, gpus=2)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            await statuses_until(changes, launch.key, running, site.settle_s)
            await wait_nodes(
                site.backend, lambda ns: sum(n.gpus_allocated for n in ns) == before + 2, site.settle_s
            )
            await site.backend.cancel(launch.key)
            await wait_nodes(
                site.backend, lambda ns: sum(n.gpus_allocated for n in ns) == before, site.settle_s
            )

    run(main)


def test_a_workload_goes_placed_running_succeeded(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            launch = site.workload(new_id("ok"), seconds=1.5)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            seen = await statuses_until(changes, launch.key, ended, site.settle_s)
            states = [s.state for s in seen]
            assert State.RUNNING in states
            assert states == sorted(states, key=ORDER.index), states  # never backwards
            last = seen[-1]
            assert (last.state, last.reason, last.exit_code) == (State.SUCCEEDED, Reason.EXIT, 0)
            assert next(s for s in seen if s.state is State.RUNNING).nodes  # where it runs

    run(main)


def test_the_same_assignment_twice_starts_one_job(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            launch = site.workload(new_id("twice"), seconds=1)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            await site.backend.launch(launch)
            again = await site.restart()  # a restarted agent that is sent the assignment again
            await again.launch(launch)
            seen = await statuses_until(changes, launch.key, ended, site.settle_s)
            assert seen[-1].state is State.SUCCEEDED
            assert [s.state for s in seen].count(State.SUCCEEDED) == 1
            assert await site.copies(launch.key) == 1
            await again.close()

    run(main)


def test_a_failure_ends_failed_with_its_exit_code_and_reason(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            launch = site.workload(new_id("bad"), exit_code=3)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            last = (await statuses_until(changes, launch.key, ended, site.settle_s))[-1]
            assert (last.state, last.reason, last.exit_code) == (State.FAILED, Reason.EXIT, 3)
            assert "3" in last.message

    run(main)


def test_a_workload_with_no_room_ends_no_capacity(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site(patience_s=2) as site:
            launch = site.workload(new_id("huge"), seconds=1, gpus=site.gpus + 1)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            last = (await statuses_until(changes, launch.key, ended, site.settle_s))[-1]
            assert (last.state, last.reason, last.exit_code) == (State.FAILED, Reason.NO_CAPACITY, None)
            assert await site.copies(launch.key) <= 1

    run(main)


def test_cancel_stops_exactly_that_attempt(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            first = site.workload(new_id("cancel"), seconds=60)
            other = site.workload(new_id("keep"), seconds=60)
            changes = site.backend.changes()
            await site.backend.launch(first)
            await site.backend.launch(other)
            await statuses_until(changes, first.key, running, site.settle_s)
            await site.backend.cancel(first.key)
            last = (await statuses_until(changes, first.key, ended, site.settle_s))[-1]
            assert (last.state, last.reason) == (State.CANCELLED, Reason.CANCELLED)
            await site.backend.cancel(first.key)  # again: a no-op
            await site.backend.cancel(AttemptKey(new_id("unknown"), 1))  # unknown: a no-op
            async with asyncio.timeout(site.settle_s):
                while not await site.stopped(first.key):
                    await asyncio.sleep(0.2)
            assert not await site.stopped(other.key)
            await site.backend.cancel(other.key)

    run(main)


def test_logs_tail_and_follow(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            launch = site.workload(new_id("logs"), seconds=1)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            await statuses_until(changes, launch.key, running, site.settle_s)
            followed = [line async for line in site.backend.logs(launch.key, follow=True)]
            assert any(site.log_line(launch) in line for line in followed), followed
            await statuses_until(changes, launch.key, ended, site.settle_s)
            whole = [line async for line in site.backend.logs(launch.key)]
            assert any(site.log_line(launch) in line for line in whole), whole
            assert [line async for line in site.backend.logs(launch.key, tail=1)] == whole[-1:]
            with pytest.raises(AttemptNotFound):
                _ = [line async for line in site.backend.logs(AttemptKey(new_id("unknown"), 1))]

    run(main)


def test_a_restarted_backend_reports_what_runs_first_and_can_cancel_it(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            launch = site.workload(new_id("survivor"), seconds=60)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            await statuses_until(changes, launch.key, running, site.settle_s)
            await site.backend.close()  # the agent stops; the workload does not
            again = await site.restart()
            recovered = await statuses_until(again.changes(), launch.key, lambda s: True, site.settle_s)
            assert recovered[0].state is State.RUNNING
            await again.cancel(launch.key)
            async with asyncio.timeout(site.settle_s):
                while not await site.stopped(launch.key):
                    await asyncio.sleep(0.2)
            await again.close()

    run(main)


def test_a_gang_runs_every_replica(make_site: SiteFactory) -> None:
    async def main() -> None:
        async with make_site() as site:
            launch = site.workload(new_id("gang"), seconds=1, replicas=2, gpus=1)
            changes = site.backend.changes()
            await site.backend.launch(launch)
            seen = await statuses_until(changes, launch.key, ended, site.settle_s)
            assert State.RUNNING in [s.state for s in seen]
            assert (seen[-1].state, seen[-1].reason) == (State.SUCCEEDED, Reason.EXIT)

    run(main)
