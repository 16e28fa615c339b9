"""Failover: from a kill -9 of the active broker to the first placement by the standby.

    .venv/bin/python bench/failover.py [--kills 10] [--db postgresql|sqlite] [--json]

Real processes on loopback: two brokers on one database (PostgreSQL with fsync on, or a
SQLite file), two simulated site agents that know both endpoints (heartbeat_s 2, as the
examples; heartbeat_ttl_s 15), and a client that follows the active broker. Each round
kills the active broker with SIGKILL, submits a one-GPU workload every 50 ms until one is
accepted, and takes the time of its PLACED event (the new active broker's clock; both share
this host's) minus the time of the kill. The killed broker is then restarted as the new
standby, and the next round kills the other one. Prints each round, then median and worst.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.client import Client, ClientError
from broker.devdb import postgres_cluster
from broker.localfed import LocalFederation
from broker.spec import parse_spec

PLACED = 2
SPEC = parse_spec(
    {
        "name": "failover-probe",
        "backend": "ray",
        "ray": {"entrypoint": "python -c pass"},
        "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
        "env": {"FEDBROKER_SIM_SECONDS": "0.5"},
    }
)


def _placed_at(fed: LocalFederation, workload_id: str, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    with fed.client() as sre:
        while time.monotonic() < deadline:
            try:
                for event in sre.events(workload_id):
                    if event.state == PLACED:
                        return event.at.ToDatetime().timestamp() if event.at.seconds else time.time()
            except ClientError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{workload_id} was not placed in {timeout:g}s")


def one_round(fed: LocalFederation) -> dict:
    victim = fed.active_broker()
    assert victim is not None, "no active broker"
    killed_at = time.time()
    fed.stop(victim, signal.SIGKILL)
    with Client(fed.endpoints, fed.tokens["harbour-robotics"], timeout=2) as tenant:
        while True:
            try:
                workload_id = tenant.submit(SPEC).workload.id
                break
            except ClientError:
                time.sleep(0.05)
    accepted_s = time.time() - killed_at
    placed_s = _placed_at(fed, workload_id) - killed_at
    fed.start_broker(victim, active=False)  # the next standby
    return {"killed": victim, "accepted_s": round(accepted_s, 2), "placed_s": round(placed_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        db_url = None
        if args.db == "postgresql":
            db_url = stack.enter_context(postgres_cluster(fsync=True))
        fed = stack.enter_context(LocalFederation(workdir, db_url=db_url, brokers=2))
        fed.start_broker("broker")
        fed.start_broker("broker-2", active=False)
        fed.endpoint = fed.endpoints
        for site in ("cyberport", "sandy-ridge"):
            fed.start_agent(site)
        fed.wait_healthy(timeout=60)
        rows: list[dict] = []
        for n in range(args.kills):
            time.sleep(3.0)  # agents settle on the active broker
            row = {"round": n + 1, **one_round(fed)}
            rows.append(row)
            if not args.json:
                print(row, file=sys.stderr)
    placed = [r["placed_s"] for r in rows]
    summary = {
        "db": args.db,
        "kills": len(rows),
        "placed_median_s": round(statistics.median(placed), 2),
        "placed_worst_s": max(placed),
        "accepted_median_s": round(statistics.median(r["accepted_s"] for r in rows), 2),
    }
    if args.json:
        print(json.dumps({"rows": rows, "summary": summary}))
    else:
        from tabulate import tabulate

        print(tabulate(rows, headers="keys"))
        print(tabulate([summary], headers="keys"))


if __name__ == "__main__":
    main()
