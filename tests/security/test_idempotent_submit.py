"""Idempotent submit (issue 15): a submit's request id names one workload per tenant, so a retry
never makes a second workload nor reserves a budget twice. Real broker and agent processes; the
ledger read from the broker's own database."""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from broker.client import ClientError
from broker.localfed import DEV_TOKENS, LocalFederation
from broker.sdk.client import Client as SdkClient
from broker.spec import WorkloadSpec, parse_spec
from tests.security.harness import bounded_federation
from tests.soak.proxy import TcpProxy, _close


def spec(seconds: float = 60, name: str = "idem") -> WorkloadSpec:
    return parse_spec(
        {
            "name": name,
            "backend": "ray",
            "ray": {"entrypoint": "python train.py"},
            "resources": {"gpus_per_replica": 2, "gpu_model": "H800"},
            "estimated_hours": 1.0,  # priced at cyberport, 70% paid by lion-rock-ai's program
            "sites": ["cyberport"],
            "env": {"FEDBROKER_SIM_SECONDS": str(seconds)},
        }
    )


def rows(fed: LocalFederation, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    path = fed.db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


def ledger_kinds(fed: LocalFederation, workload_id: str) -> dict[str, int]:
    found = rows(fed, "SELECT kind, count(*) FROM ledger WHERE workload_id = ? GROUP BY kind", workload_id)
    return dict(found)


def reserved_once_closed_once(fed: LocalFederation, workload_id: str) -> bool:
    """One reservation, and one row closing it (released, or settled if it had started to run)."""
    kinds = ledger_kinds(fed, workload_id)
    return kinds.get("reserve") == 1 and kinds.get("release", 0) + kinds.get("settle", 0) == 1


def wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    root = tmp_path_factory.mktemp("idempotent")
    federation = LocalFederation(
        root,
        config=bounded_federation(root),
        agent_overrides={"heartbeat_s": 0.5},
        agents={"cyberport": LocalFederation(root).agent_configs["cyberport"]},
    )
    with federation:
        federation.start_broker()
        federation.start_agent("cyberport")
        federation.wait_healthy(["cyberport"])
        yield federation


def test_a_repeated_request_id_answers_the_same_workload_and_reserves_once(fed: LocalFederation) -> None:
    with fed.client("lion-rock-ai") as tenant:
        first = tenant.submit(spec(), request_id="retry-1").workload
        wait_for(lambda: tenant.get(first.id).site == "cyberport", "the workload placed")
        again = tenant.submit(spec(), request_id="retry-1")
        assert again.workload.id == first.id
        assert again.explanation.summary.startswith("already submitted with request id 'retry-1'")
        # A different spec under the same id is the client's mistake, said in words.
        with pytest.raises(ClientError) as error:
            tenant.submit(spec(name="other"), request_id="retry-1")
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "request_id: 'retry-1' was used for workload" in error.value.message
    # The id is the tenant's own: another tenant's same id is another workload.
    with fed.client("harbour-robotics") as other:
        theirs = other.submit(spec(), request_id="retry-1").workload
    assert theirs.id != first.id
    made = rows(fed, "SELECT tenant, id FROM workloads WHERE request_id = 'retry-1' ORDER BY tenant")
    assert made == [("harbour-robotics", theirs.id), ("lion-rock-ai", first.id)]
    assert ledger_kinds(fed, first.id) == {"reserve": 1}

    # Ended: the engine forgets it, and a repeat is answered from the database.
    with fed.client("lion-rock-ai") as tenant:
        tenant.cancel(first.id)
        repeat = tenant.submit(spec(), request_id="retry-1").workload
    assert (repeat.id, repeat.state) == (first.id, 6)  # WORKLOAD_STATE_CANCELLED
    assert reserved_once_closed_once(fed, first.id)
    with fed.client("sre") as operator:
        operator.cancel(theirs.id)


def test_concurrent_repeats_make_one_workload(fed: LocalFederation) -> None:
    """Eight copies of one submit at once (several land in one scheduling cycle): one workload."""

    def submit(_: int) -> str:
        with fed.client("lion-rock-ai") as tenant:
            return str(tenant.submit(spec(), request_id="burst-1").workload.id)

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(submit, range(8)))
    assert len(ids) == 1
    (wid,) = ids
    assert rows(fed, "SELECT count(*) FROM workloads WHERE request_id = 'burst-1'") == [(1,)]
    wait_for(lambda: ledger_kinds(fed, wid).get("reserve") == 1, "its reservation")
    with fed.client("lion-rock-ai") as tenant:
        tenant.cancel(wid)
    assert reserved_once_closed_once(fed, wid)


def test_a_request_id_is_bounded_and_never_echoed(fed: LocalFederation) -> None:
    with fed.client("lion-rock-ai") as tenant:
        for bad, words in (("x" * 129, "at most 128"), ("a b", "visible ASCII"), ("é" * 4, "visible ASCII")):
            with pytest.raises(ClientError) as error:
                tenant.submit(spec(), request_id=bad)
            assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert words in error.value.message and bad not in error.value.message


class ReplyDroppingProxy(TcpProxy):
    """Forwards requests to the broker, and while `dropping` throws its answers away: a submit
    that reaches the broker and commits, whose answer never comes back."""

    dropping = False

    def _pump(
        self, source: socket.socket, sink: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        try:
            while data := source.recv(65536):
                if not (self.dropping and source is pair[1]):  # pair: (client, upstream)
                    sink.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._pairs.discard(pair)
        _close(*pair)  # shut down, so the other direction's blocked read ends too


def test_a_retry_across_a_broker_kill_returns_the_stored_workload(tmp_path: Path) -> None:
    """The submit commits, its answer is lost, the broker is killed (-9) and restarted: the SDK's
    retry under the same request id gets the stored workload, and nothing is made or reserved
    twice."""
    fed = LocalFederation(
        tmp_path,
        config=bounded_federation(tmp_path),
        agent_overrides={"heartbeat_s": 0.5},
        agents={"cyberport": LocalFederation(tmp_path).agent_configs["cyberport"]},
    )
    proxy = ReplyDroppingProxy(fed.endpoint)
    with fed:
        fed.start_broker()
        fed.start_agent("cyberport")
        fed.wait_healthy(["cyberport"])
        answers: list[Any] = []
        with SdkClient(proxy.address, DEV_TOKENS["lion-rock-ai"]) as sdk:
            sdk.sites()  # the connection is up before answers start to vanish
            proxy.dropping = True
            submitting = threading.Thread(
                target=lambda: answers.append(sdk.submit(spec(), request_id="lost-answer-1"))
            )
            submitting.start()
            wait_for(
                lambda: rows(fed, "SELECT id FROM workloads WHERE request_id = 'lost-answer-1'"),
                "the submit committed",
            )
            (stored,) = rows(fed, "SELECT id FROM workloads WHERE request_id = 'lost-answer-1'")[0]
            wait_for(lambda: ledger_kinds(fed, stored).get("reserve") == 1, "its reservation")
            fed.stop("broker", signal.SIGKILL)  # the answer was never delivered; the client retries
            proxy.dropping = False
            fed.start_broker()
            submitting.join(60)
        assert not submitting.is_alive(), "the SDK's retry did not end"
        assert [a.id for a in answers] == [stored]
        assert rows(fed, "SELECT count(*) FROM workloads WHERE request_id = 'lost-answer-1'") == [(1,)]
        assert rows(fed, "SELECT count(*) FROM workloads") == [(1,)]
        assert ledger_kinds(fed, stored) == {"reserve": 1}
    proxy.close()


def test_the_cli_retries_under_one_request_id(tmp_path: Path) -> None:
    """`fedbroker submit` sets a request id and retries on UNAVAILABLE: started while the broker is
    down, it is answered once the broker is up, with one workload."""
    import subprocess
    import sys

    fed = LocalFederation(tmp_path, config=bounded_federation(tmp_path))
    workload = tmp_path / "w.yaml"
    workload.write_text(
        "name: cli-retry\nbackend: ray\nray: {entrypoint: python x.py}\n"
        "resources: {gpus_per_replica: 1, gpu_model: H800}\n"
    )
    with fed:
        env = {"FEDBROKER_ENDPOINT": fed.endpoint, "FEDBROKER_TOKEN": DEV_TOKENS["lion-rock-ai"]}
        cli = subprocess.Popen(
            [sys.executable, "-m", "broker", "submit", "-f", str(workload), "-o", "json"],
            env={**__import__("os").environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2)  # it has been refused (UNAVAILABLE) at least once
        fed.start_broker()
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err
        assert rows(fed, "SELECT count(*) FROM workloads WHERE request_id IS NOT NULL") == [(1,)]
        assert '"cli-retry"' in out


def test_a_repeat_is_answered_when_the_tenants_queue_is_full(tmp_path: Path) -> None:
    """The queue bound refuses new work, not the answer to a retry of work already queued."""
    fed = LocalFederation(tmp_path, config=bounded_federation(tmp_path, limits={"queued_per_tenant": 1}))
    with fed:
        fed.start_broker()  # no agents: everything queues
        with fed.client("lion-rock-ai") as tenant:
            first = tenant.submit(spec(), request_id="queued-1").workload
            assert tenant.submit(spec(), request_id="queued-1").workload.id == first.id
            with pytest.raises(ClientError) as error:
                tenant.submit(spec(), request_id="queued-2")
        assert error.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
