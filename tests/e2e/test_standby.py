"""Two brokers on one database: one schedules, the other waits; faults in between lose nothing.

Real processes on PostgreSQL (and SQLite for the waiting broker): two brokers, two simulated
agents that know both endpoints, and clients that follow the active broker. After each fault
every workload ends in exactly one state, SUCCEEDED on its first attempt, each attempt was
launched once (the agents' own logs), and no site was over-committed (the simulated backend
refuses a launch that does not fit: no attempt ended for lack of room).
"""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from fedbroker.v1 import agent_service_pb2_grpc

from broker.client import Client, ClientError
from broker.endpoints import ACTIVE_SERVICE
from broker.localfed import LocalFederation
from broker.sdk.aio import AsyncClient
from broker.sdk.errors import UnavailableError
from broker.spec import parse_spec
from site_agents import messages

LAUNCHED = re.compile(r"launched (wl-[0-9a-f]+)#(\d+) on the")
SUCCEEDED = 4
SPEC = parse_spec(
    {
        "name": "short",
        "backend": "ray",
        "ray": {"entrypoint": "python -c pass"},
        "resources": {"gpus_per_replica": 2, "gpu_model": "H800"},
        "env": {"FEDBROKER_SIM_SECONDS": "1.0"},
        "max_attempts": 1,
    }
)
SITES = ("cyberport", "sandy-ridge")


@contextmanager
def _two_brokers(tmp_path: Path, db_url: str) -> Iterator[LocalFederation]:
    with LocalFederation(tmp_path, db_url=db_url, brokers=2, agent_overrides={"heartbeat_s": 0.5}) as fed:
        fed.start_broker("broker")
        fed.start_broker("broker-2", active=False)
        fed.endpoint = fed.endpoints  # clients follow the active broker
        for site in SITES:
            fed.start_agent(site)
        fed.wait_healthy()
        yield fed


@contextmanager
def _submitting(fed: LocalFederation) -> Iterator[list[str]]:
    """Submits from a thread, as a client would, retrying while no broker is active."""
    accepted: list[str] = []
    stop = threading.Event()

    def submit_forever() -> None:
        with Client(fed.endpoints, fed.tokens["harbour-robotics"], timeout=5) as tenant:
            while not stop.is_set():
                try:
                    accepted.append(tenant.submit(SPEC).workload.id)
                except ClientError:
                    time.sleep(0.05)
                time.sleep(0.02)

    submitter = threading.Thread(target=submit_forever)
    submitter.start()
    try:
        yield accepted
    finally:
        stop.set()
        submitter.join()


def _check_all_done_once(fed: LocalFederation, accepted: list[str]) -> None:
    assert len(accepted) > 10

    def all_done() -> bool:
        with fed.client() as sre:
            states = {w.id: w.state for w in sre.list(limit=10_000)}
        return set(accepted) <= set(states) and all(s in (4, 5, 6) for s in states.values())

    fed.wait(all_done, 120, "every accepted workload to finish")
    with fed.client() as sre:
        workloads = sre.list(limit=10_000)
        odd = [
            (w.id, w.state, w.attempt, w.message) for w in workloads if (w.state, w.attempt) != (SUCCEEDED, 1)
        ]
        assert not odd
        reasons = {e.reason for w in workloads for e in sre.events(w.id)}
    assert "no_capacity" not in reasons  # no site was over-committed
    launches = Counter(
        m.groups()
        for name in fed.processes
        if name.startswith("agent-")
        for m in LAUNCHED.finditer(fed.log_tail(name, lines=1_000_000))
    )
    assert {w for w, _ in launches} >= set(accepted)
    assert max(launches.values()) == 1, [k for k, n in launches.items() if n > 1]


def test_the_standby_takes_over_from_a_killed_active_broker_mid_dispatch(
    tmp_path: Path, postgres_url: str
) -> None:
    with _two_brokers(tmp_path, postgres_url) as fed:
        with _submitting(fed) as accepted:
            time.sleep(1.5)
            fed.stop("broker", signal.SIGKILL)
            killed_at = time.monotonic()
            fed.wait(lambda: fed.active_broker() == "broker-2", 30, "broker-2 to take over")
            took_over_s = time.monotonic() - killed_at
            time.sleep(2.0)  # submits go on to the new active broker
        assert took_over_s < 5.0
        assert "is the active scheduler now (epoch 2)" in fed.log_tail("broker-2", 1_000_000)
        _check_all_done_once(fed, accepted)


def test_a_broker_killed_while_an_agent_reconnects_loses_nothing(tmp_path: Path, postgres_url: str) -> None:
    with _two_brokers(tmp_path, postgres_url) as fed:
        with _submitting(fed) as accepted:
            time.sleep(1.0)
            fed.stop("agent-cyberport", signal.SIGKILL)  # its runs go on in its (lost) backend...
            fed.start_agent("cyberport")  # ...and a new agent connects while the broker dies
            fed.stop("broker", signal.SIGKILL)
            fed.wait(lambda: fed.active_broker() == "broker-2", 30, "broker-2 to take over")
            time.sleep(2.0)
        with fed.client() as sre:
            fed.wait(
                lambda: all(w.state in (4, 5, 6) for w in sre.list(limit=10_000)),
                120,
                "every workload to end",
            )
            workloads = sre.list(limit=10_000)
        # The killed agent's attempts were lost with it: requeued without using an attempt, or
        # ended; none ran twice at once, and everything accepted ended in one known state.
        assert set(accepted) <= {w.id for w in workloads}
        launches = Counter(
            m.groups()
            for name in ("agent-cyberport", "agent-sandy-ridge")
            for m in LAUNCHED.finditer(fed.log_tail(name, lines=1_000_000))
        )
        assert max(launches.values()) == 1


def test_a_paused_active_broker_steps_down_and_its_late_writes_fail(
    tmp_path: Path, postgres_url: str
) -> None:
    with _two_brokers(tmp_path, postgres_url) as fed:
        with _submitting(fed) as accepted:
            time.sleep(1.0)
            paused = fed.processes["broker"]
            paused.send_signal(signal.SIGSTOP)
            try:
                fed.wait(lambda: fed.active_broker() == "broker-2", 30, "broker-2 to take over")
                time.sleep(1.0)
            finally:
                paused.send_signal(signal.SIGCONT)
            fed.wait(
                lambda: "steps down to standby" in fed.log_tail("broker", 1_000_000),
                15,
                "broker to step down",
            )
            time.sleep(1.0)
        assert fed.active_broker() == "broker-2"
        assert not Client(fed.broker_endpoints["broker"], "").serving(service=ACTIVE_SERVICE)
        log = fed.log_tail("broker", 1_000_000)
        # Whatever it was doing when paused, it wrote nothing after it lost the lease.
        assert "lost the lease" in log or "no longer holds the lease" in log
        _check_all_done_once(fed, accepted)


def _standby_connect_refusal(endpoint: str, token: str, site: str) -> dict[str, str]:
    """An agent's Connect to a standby: the refusal's trailing metadata (UNAVAILABLE asserted)."""
    with grpc.insecure_channel(endpoint) as channel:
        stream = agent_service_pb2_grpc.AgentServiceStub(channel).Connect(
            iter([messages.hello(site, "test-agent", ["ray"], "test")]),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )
        with pytest.raises(grpc.RpcError) as refused:
            next(stream)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    return dict(refused.value.trailing_metadata() or ())  # type: ignore[attr-defined]


def test_a_second_broker_on_a_sqlite_file_waits_and_does_not_schedule(tmp_path: Path) -> None:
    with LocalFederation(tmp_path, brokers=2, agent_overrides={"heartbeat_s": 0.5}) as fed:
        fed.start_broker("broker")
        fed.start_broker("broker-2", active=False)
        for site in SITES:
            fed.start_agent(site)
        fed.wait_healthy()
        with Client(fed.broker_endpoints["broker-2"], fed.tokens["harbour-robotics"]) as standby:
            started = time.monotonic()
            try:
                standby.submit(SPEC)
                raise AssertionError("a standby accepted a submit")
            except ClientError as error:
                assert error.code.name == "UNAVAILABLE"
                assert "is on standby; the active broker is" in error.message
                # A live broker holds the lease: the standby says how long a retry could help
                # (the lease's rest, a poll, the takeover's rebuild), and the SDK stops there
                # rather than retrying its full 30 s.
                assert error.retry_within_s is not None and 0 < error.retry_within_s <= 10
            assert time.monotonic() - started < 15
            assert standby.list() == []  # it reads from the database all the same

        async def submit_async() -> None:  # the asyncio SDK keeps the same bound
            async with AsyncClient(fed.broker_endpoints["broker-2"], fed.tokens["harbour-robotics"]) as api:
                with pytest.raises(UnavailableError) as refused:
                    await api.submit(SPEC)
                assert refused.value.retry_within_s is not None and 0 < refused.value.retry_within_s <= 10

        started = time.monotonic()
        asyncio.run(submit_async())
        assert time.monotonic() - started < 15
        # An agent's stream is refused with the same trailing metadata (agents read the role).
        trailing = _standby_connect_refusal(fed.broker_endpoints["broker-2"], fed.tokens[SITES[0]], SITES[0])
        assert trailing["fedbroker-role"] == "standby"
        assert 0 < float(trailing["fedbroker-retry-within-s"]) <= 10

        with Client(fed.endpoints, fed.tokens["harbour-robotics"]) as tenant:
            ids = [tenant.submit(SPEC).workload.id for _ in range(4)]
        fed.wait(lambda: all(fed.client().get(i).state == SUCCEEDED for i in ids), 60, "the workloads")
        assert "active scheduler" not in fed.log_tail("broker-2", 1_000_000)
