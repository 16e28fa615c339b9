"""kill -9 of the broker at moments of load: nothing acknowledged is lost, nothing launched twice.

Real processes: a broker on SQLite and two simulated agents. Submits keep coming from a
client thread while workloads start and finish; the broker is SIGKILLed three times and
restarted from the database alone. The agents' own logs are the launch records.
Every workload whose Submit was answered must end SUCCEEDED, launched exactly once: an
agent that stayed up keeps running its work across broker restarts, so no attempt is lost
and none is re-run.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from broker.client import Client, ClientError
from broker.localfed import LocalFederation
from broker.spec import parse_spec

LAUNCHED = re.compile(r"launched (wl-[0-9a-f]+)#(\d+) on the")


def test_kill_9_of_the_broker_loses_nothing_and_launches_nothing_twice(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "name": "short",
            "backend": "ray",
            "ray": {"entrypoint": "python -c pass"},
            "resources": {"gpus_per_replica": 2, "gpu_model": "H800"},
            "env": {"FEDBROKER_SIM_SECONDS": "1.5"},
            "max_attempts": 1,
        }
    )
    with LocalFederation(tmp_path, agent_overrides={"heartbeat_s": 0.5}) as fed:
        fed.start_broker()
        for site in ("cyberport", "sandy-ridge"):
            fed.start_agent(site)
        fed.wait_healthy()
        accepted: list[str] = []
        stop = threading.Event()

        def submit_forever() -> None:
            while not stop.is_set():
                try:
                    with Client(fed.endpoint, fed.tokens["harbour-robotics"], timeout=5) as tenant:
                        while not stop.is_set():
                            accepted.append(tenant.submit(spec).workload.id)
                            time.sleep(0.02)
                except ClientError:
                    time.sleep(0.1)  # the broker is down: try again, as a client would

        submitter = threading.Thread(target=submit_forever)
        submitter.start()
        try:
            for _ in range(3):
                time.sleep(1.5)
                fed.stop("broker", signal.SIGKILL)
                time.sleep(0.3)
                fed.start_broker()
        finally:
            stop.set()
            submitter.join()
        assert len(accepted) > 20

        def all_done() -> bool:
            with fed.client() as sre:
                states = {w.id: w.state for w in sre.list(limit=10_000)}
            return set(accepted) <= set(states) and all(s in (4, 5, 6) for s in states.values())  # ended

        fed.wait(all_done, 120, "every accepted workload to finish")
        with fed.client() as sre:
            states = {w.id: (w.state, w.attempt) for w in sre.list(limit=10_000)}
        assert set(accepted) <= set(states)
        # Every stored workload (answered or not when the broker died) SUCCEEDED on its first attempt.
        assert set(states.values()) == {(4, 1)}
        launches = Counter(
            m.groups()
            for site in ("cyberport", "sandy-ridge")
            for m in LAUNCHED.finditer(fed.log_tail(f"agent-{site}", lines=1_000_000))
        )
        assert {w for w, _ in launches} >= set(accepted)
        assert max(launches.values()) == 1, [k for k, n in launches.items() if n > 1]
