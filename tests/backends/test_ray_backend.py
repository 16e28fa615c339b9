"""What only the Ray backend does, on the real local Ray head: the job's env, and a gang left waiting."""

from __future__ import annotations

import asyncio
import dataclasses

from site_agents.backends.base import Reason, State

from .sites import RaySite, new_id, statuses_until
from .test_contract import ended, run


def test_the_job_sees_the_workloads_env_and_traceparent(ray_address: str) -> None:
    async def main() -> None:
        site = RaySite(ray_address)
        code = "import os; print('env', os.environ['TRACEPARENT'], os.environ['EPOCHS'], os.environ['MINE'])"
        launch = dataclasses.replace(
            site.workload(new_id("env")),
            entrypoint=f'python -c "{code}"',
            env={"TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "EPOCHS": "3"},
            runtime_env={"env_vars": {"EPOCHS": "1", "MINE": "kept"}},
        )
        changes = site.backend.changes()
        await site.backend.launch(launch)
        assert (await statuses_until(changes, launch.key, ended, 30))[-1].state is State.SUCCEEDED
        lines = [line async for line in site.backend.logs(launch.key)]
        assert "env 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 3 kept" in lines
        await site.backend.close()

    run(main)


def test_a_gang_that_cannot_be_placed_waits_then_ends_no_capacity(ray_address: str) -> None:
    async def main() -> None:
        site = RaySite(ray_address, start_timeout_s=4)
        # One node, two replicas the broker reserved on distinct nodes: STRICT_SPREAD cannot be met.
        launch = dataclasses.replace(site.workload(new_id("spread"), replicas=2, gpus=1), nodes=("n1", "n2"))
        changes = site.backend.changes()
        await site.backend.launch(launch)
        seen = await statuses_until(changes, launch.key, ended, 30)
        assert "waiting for the gang's placement group" in [s.message for s in seen]
        assert State.RUNNING not in [s.state for s in seen]
        assert (seen[-1].state, seen[-1].reason) == (State.FAILED, Reason.NO_CAPACITY)
        async with asyncio.timeout(30):
            while not await site.stopped(launch.key):
                await asyncio.sleep(0.2)
        await site.backend.close()

    run(main)
