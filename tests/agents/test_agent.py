"""The real agent against a real in-test gRPC broker over a real socket (127.0.0.1), simulated backend."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable

import pytest

from broker import telemetry
from site_agents.backends.base import Launch
from site_agents.backends.simulated import SimulatedBackend
from site_agents.errors import AgentRefused

from .harness import (
    CANCELLED,
    FAILED,
    RUNNING,
    SITE,
    SUCCEEDED,
    BrokerServer,
    FakeBroker,
    assignment,
    cancel,
    gpus_allocated,
    key,
    make_agent,
    reporting_agent,
    running,
    serving,
    states,
)


def run(coro: Awaitable[None]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await coro

    asyncio.run(bounded())


def test_hello_first_then_full_snapshots_with_increasing_seq() -> None:
    async def main() -> None:
        async with serving() as server:
            agent, _ = make_agent(server.port)
            broker = server.broker
            async with running(agent):
                await broker.wait_for(lambda: len(broker.of("inventory")) >= 3)
        first = broker.messages[0]
        assert first.WhichOneof("kind") == "hello"
        assert (first.hello.site, first.hello.agent_id) == (SITE, "test-agent")
        assert sorted(first.hello.backends) == ["kubernetes", "ray"]
        assert first.hello.version
        reports = broker.of("inventory")
        seqs = [r.seq for r in reports]
        assert all(a < b for a, b in itertools.pairwise(seqs)), seqs
        for report in reports:
            assert [n.name for n in report.nodes] == ["cp-h800-0", "cp-h800-1"]
            assert all(
                (n.gpu_model, n.gpus_allocatable, n.gpus_allocated) == ("H800", 8, 0) for n in report.nodes
            )
            assert list(report.datasets) == ["cantonese-speech"]

    run(main())


def test_seq_keeps_growing_across_agent_restarts() -> None:
    async def main() -> None:
        async with serving() as server:
            broker = server.broker
            for _ in range(2):
                agent, _ = make_agent(server.port)  # a new agent, as after a process restart
                before = len(broker.messages)
                async with running(agent):
                    await broker.wait_report(lambda r: True, after=before)
            seqs = [r.seq for r in broker.of("inventory")]
            assert broker.connections == 2
            assert all(a < b for a, b in itertools.pairwise(seqs)), seqs

    run(main())


def test_a_resent_assignment_is_acked_again_but_launched_once() -> None:
    async def main() -> None:
        async with serving() as server:
            agent, backend = make_agent(server.port)
            broker = server.broker
            async with running(agent):
                await broker.wait_for(lambda: broker.of("inventory"))
                broker.send(assignment("w1", env={"FEDBROKER_SIM_SECONDS": "5"}))
                broker.send(assignment("w1", env={"FEDBROKER_SIM_SECONDS": "5"}))
                await broker.wait_for(lambda: len(broker.of("ack")) == 2)
                await broker.wait_update("w1", 1, RUNNING)
                await asyncio.sleep(0.2)  # time for a wrong second launch to show
            assert [(a.workload_id, a.attempt) for a in broker.of("ack")] == [("w1", 1), ("w1", 1)]
            assert backend.starts == [key("w1")]
            assert [u.state for u in broker.of("update")] == [RUNNING]

    run(main())


def test_a_workload_runs_to_succeeded_and_its_gpus_come_back() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, _):
            broker.send(assignment("w1", replicas=2, env={"FEDBROKER_SIM_SECONDS": "0.5"}))
            busy = await broker.wait_report(lambda r: gpus_allocated(r) == 16)
            assert states(busy) == {("w1", 1): RUNNING}
            assert sorted(busy.workloads[0].nodes) == ["cp-h800-0", "cp-h800-1"]
            done = await broker.wait_update("w1", 1, SUCCEEDED)
            assert (done.exit_code, done.message, done.reason) == (0, "exit code 0", "exit")
            after = len(broker.messages)
            idle = await broker.wait_report(lambda r: gpus_allocated(r) == 0, after=after)
            # Ended attempts stay in the snapshots for the retention window.
            assert states(idle) == {("w1", 1): SUCCEEDED}

    run(main())


def test_exit_code_3_ends_failed_with_that_code() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, _):
            env = {"FEDBROKER_SIM_SECONDS": "0.1", "FEDBROKER_SIM_EXIT_CODE": "3"}
            broker.send(assignment("w1", env=env))
            failed = await broker.wait_update("w1", 1, FAILED)
            assert (failed.exit_code, failed.message, failed.reason) == (3, "exit code 3", "exit")

    run(main())


def test_a_gang_that_does_not_fit_fails_with_the_reason() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, backend):
            broker.send(assignment("big", replicas=3))
            failed = await broker.wait_update("big", 1, FAILED)
            assert (failed.message, failed.reason) == ("no room: needs 3x8 H800", "no_capacity")
            assert not failed.HasField("exit_code")
            assert backend.starts == []
            report = await broker.wait_report(lambda r: bool(r.workloads))
            assert [(w.workload_id, w.reason) for w in report.workloads] == [("big", "no_capacity")]

    run(main())


def test_cancel_stops_the_attempt_and_frees_its_gpus() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, _):
            broker.send(assignment("w1", env={"FEDBROKER_SIM_SECONDS": "30"}))
            await broker.wait_report(lambda r: gpus_allocated(r) == 8)
            broker.send(cancel("w1"))
            cancelled = await broker.wait_update("w1", 1, CANCELLED)
            assert cancelled.reason == "cancelled"
            after = len(broker.messages)
            idle = await broker.wait_report(lambda r: True, after=after)
            assert gpus_allocated(idle) == 0
            assert states(idle) == {("w1", 1): CANCELLED}

    run(main())


def test_cancel_of_attempt_1_never_touches_attempt_2() -> None:
    async def main() -> None:
        async with reporting_agent() as (broker, _):
            broker.send(assignment("w1", 1, env={"FEDBROKER_SIM_SECONDS": "30"}))
            broker.send(assignment("w1", 2, env={"FEDBROKER_SIM_SECONDS": "30"}))
            await broker.wait_report(lambda r: gpus_allocated(r) == 16)
            broker.send(cancel("w1", 1))
            await broker.wait_update("w1", 1, CANCELLED)
            after = len(broker.messages)
            report = await broker.wait_report(lambda r: True, after=after)
            assert states(report) == {("w1", 1): CANCELLED, ("w1", 2): RUNNING}
            assert gpus_allocated(report) == 8

    run(main())


def test_traceparent_in_the_launched_env_continues_the_assignments_trace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry.setup_tracing("fedbroker-agent-tests")  # agent.launch gets its own span id, exported or not
    trace_id, parent_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"

    caplog.set_level(logging.INFO, logger="fedbroker.agent")

    async def main() -> None:
        async with serving() as server:
            agent, backend = make_agent(server.port)
            broker = server.broker
            async with running(agent):
                await broker.wait_for(lambda: broker.of("inventory"))
                context = {"traceparent": f"00-{trace_id}-{parent_span}-01"}
                broker.send(
                    assignment(
                        "w1", env={"FEDBROKER_SIM_SECONDS": "0.1", "EPOCHS": "3"}, trace_context=context
                    )
                )
                await broker.wait_update("w1", 1, SUCCEEDED)
            env = backend.launches[key("w1")].env
            version, got_trace, got_span, _flags = env["TRACEPARENT"].split("-")
            assert (version, got_trace) == ("00", trace_id)
            assert got_span != parent_span  # the agent.launch span, a child of the broker's
            # The launch's log line names the same trace and span as the job's environment.
            launched = next(r for r in caplog.records if r.getMessage().startswith("launched w1#1"))
            assert (launched.trace_id, launched.span_id) == (trace_id, got_span)
            assert env["FEDBROKER_WORKLOAD_ID"] == "w1"
            assert env["FEDBROKER_ATTEMPT"] == "1"
            assert env["EPOCHS"] == "3"

    run(main())


def test_reconnects_after_a_broker_restart_and_resyncs_what_it_runs() -> None:
    async def main() -> None:
        broker = FakeBroker()
        server = BrokerServer(broker)
        await server.start()
        agent, _ = make_agent(server.port)
        try:
            async with running(agent):
                await broker.wait_for(lambda: broker.of("inventory"))
                broker.send(assignment("long", env={"FEDBROKER_SIM_SECONDS": "30"}))
                broker.send(assignment("short", env={"FEDBROKER_SIM_SECONDS": "0.4"}))
                await broker.wait_report(lambda r: gpus_allocated(r) == 16)
                last_seq = broker.of("inventory")[-1].seq

                await server.stop()  # the stream breaks; "short" ends while nobody listens
                await asyncio.sleep(0.6)
                assert broker.of("update")[-1].state == RUNNING  # SUCCEEDED was not delivered
                before = len(broker.messages)
                await server.start()  # same port

                hello = await broker.wait_for(lambda: broker.connections == 2 and broker.messages[before:])
                assert hello[0].WhichOneof("kind") == "hello"
                report = await broker.wait_report(lambda r: True, after=before)
                assert report.seq > last_seq
                assert states(report) == {("long", 1): RUNNING, ("short", 1): SUCCEEDED}
                assert gpus_allocated(report) == 8
        finally:
            await server.stop()

    run(main())


def test_keeps_retrying_while_the_broker_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fedbroker.agent")

    async def main() -> None:
        server = BrokerServer(FakeBroker())
        await server.start()
        port = server.port
        await server.stop()  # nobody listens on port now
        agent, _ = make_agent(port)
        async with running(agent):
            await asyncio.sleep(0.5)
            await server.start()
            await server.broker.wait_for(lambda: server.broker.of("inventory"))
        await server.stop()

    run(main())
    retries = [r.getMessage() for r in caplog.records if "reconnecting to broker" in r.getMessage()]
    assert len(retries) >= 2, retries
    assert any("connected to broker test-broker" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("token", "site", "code", "details"),
    [
        ("wrong-token", SITE, "UNAUTHENTICATED", "unknown agent token"),
        ("cyberport-secret", "sandy-ridge", "PERMISSION_DENIED", "this token is not site cyberport's"),
    ],
)
def test_a_refused_credential_stops_the_agent_instead_of_retrying(
    token: str, site: str, code: str, details: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with serving(FakeBroker(site=site)) as server:
            agent, _ = make_agent(server.port, token=token)
            with pytest.raises(AgentRefused) as refused:
                async with asyncio.timeout(5):
                    await agent.run()
            assert (refused.value.code, refused.value.details) == (code, details)
            assert code in str(refused.value) and details in str(refused.value)
            # A refusal that meets the Hello being written can reach the agent as gRPC core's
            # "INTERNAL: Internal error from Core" (the status is lost in that race): the agent
            # rightly retries that one as a broken stream. Every other refusal is final.
            raced = sum("INTERNAL: Internal error from Core" in r.getMessage() for r in caplog.records)
            assert server.broker.connections == 1 + raced

    run(main())


def test_stop_closes_the_stream() -> None:
    async def main() -> None:
        async with serving() as server:
            agent, _ = make_agent(server.port)
            task = asyncio.create_task(agent.run())
            await server.broker.wait_for(lambda: server.broker.of("inventory"))
            agent.stop()
            async with asyncio.timeout(5):
                await task  # returns, no exception
            assert server.broker.clean_ends == 1  # half-closed, not dropped
            count = len(server.broker.messages)
            await asyncio.sleep(0.3)
            assert len(server.broker.messages) == count  # no more heartbeats

    run(main())


class GatedBackend(SimulatedBackend):
    """The simulated backend whose launches of workload "slow" wait for a gate (a slow Ray submit)."""

    def __init__(self, backend: SimulatedBackend) -> None:
        super().__init__(cluster=backend.cluster)
        self.gate = asyncio.Event()

    async def launch(self, launch: Launch) -> None:
        if launch.key.workload_id == "slow":
            await self.gate.wait()
        await super().launch(launch)


def test_a_slow_launch_blocks_neither_the_stream_nor_heartbeats_and_a_cancel_lands_after_it() -> None:
    async def main() -> None:
        async with serving() as server:
            broker = server.broker
            agent, simulated = make_agent(server.port)
            backend = agent.backend = GatedBackend(simulated)
            async with running(agent):
                await broker.wait_for(lambda: broker.of("inventory"))
                broker.send(assignment("slow", env={"FEDBROKER_SIM_SECONDS": "30"}))
                broker.send(assignment("fast", env={"FEDBROKER_SIM_SECONDS": "30"}))
                await broker.wait_update("fast", 1, RUNNING)
                assert {a.workload_id for a in broker.of("ack")} == {"slow", "fast"}
                broker.send(cancel("slow"))
                after = len(broker.messages)
                # Reports keep coming while "slow" is still being launched.
                await broker.wait_report(lambda r: True, after=after)
                await broker.wait_report(lambda r: True, after=len(broker.messages))
                assert backend.starts == [key("fast")]
                backend.gate.set()
                cancelled = await broker.wait_update("slow", 1, CANCELLED)
                assert cancelled.reason == "cancelled"
                assert backend.starts == [key("fast"), key("slow")]  # launched, then cancelled: in order

    run(main())
