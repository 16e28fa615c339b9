"""What one heartbeat costs the broker when a site runs 2,000 workloads and nothing changed.

    .venv/bin/python bench/heartbeat.py [--workloads 2000] [--nodes 250] [--json]

A real engine on a temporary SQLite database holds the workloads (submitted and reported
RUNNING at one site). Then the same snapshot arrives again, as its agent would send it every
heartbeat_s, and each is timed through what the broker does with it: parse the wire bytes,
compare with the stream's last snapshot (api/agent_service.py), hand the engine the cached
`Inventory`, and run the engine's cycle for it. Prints p50/p99/max over --rounds heartbeats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedbroker.v1 import agent_service_pb2 as pb
from fedbroker.v1 import types_pb2

from broker.api import convert
from broker.auth import sha256_hex
from broker.config import parse_federation
from broker.engine import commands as c
from broker.engine.engine import Engine
from broker.gc_tuning import tune_gc
from broker.spec import parse_spec, spec_to_proto
from broker.store import Store


async def measure(workloads: int, nodes: int, rounds: int) -> dict:
    config = parse_federation(
        {
            "sites": [
                {
                    "name": "cyberport",
                    "backends": ["ray"],
                    "gpu_prices_hkd_per_hour": {"H800": 38},
                    "agent_token_sha256": sha256_hex("a"),
                }
            ],
            "tenants": [{"name": "t", "token_sha256": sha256_hex("t")}],
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(config, Store(f"sqlite:///{tmp}/bench.db"))
        await engine.start(tick=False)
        session = await engine.call(c.Hello("cyberport", "bench-agent"))
        gpus = -(-workloads // nodes)
        node_list = [
            types_pb2.Node(name=f"n{i}", gpu_model="H800", gpus_allocatable=gpus, cpus=128, memory_gb=1024)
            for i in range(nodes)
        ]
        report = pb.InventoryReport(seq=1, nodes=node_list)
        engine.post(c.Report(session, 1, convert.inventory(report)))
        spec = parse_spec(
            {
                "name": "w",
                "backend": "ray",
                "ray": {"entrypoint": "x"},
                "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
            }
        )
        wire = spec_to_proto(spec).SerializeToString()
        records = await asyncio.gather(*(engine.submit("t", spec, wire) for _ in range(workloads)))
        running = [
            pb.RunningWorkload(workload_id=r.id, attempt=r.attempt, state=types_pb2.WORKLOAD_STATE_RUNNING)
            for r, _ in records
        ]
        for node in node_list:
            node.gpus_allocated = node.gpus_allocatable
        report = pb.InventoryReport(seq=2, nodes=node_list, workloads=running)
        last, inventory = report, convert.inventory(report)
        engine.post(c.Report(session, 2, inventory))
        await engine.call(c.Tick())
        assert len(engine.state.live) == workloads
        tune_gc()  # as `fedbroker serve` does after recovery
        timings = []
        commits_before = engine.writer.commits
        for seq in range(3, 3 + rounds):
            report.seq = seq
            data = report.SerializeToString()
            start = time.perf_counter()
            incoming = pb.InventoryReport.FromString(data)
            same = (
                incoming.workloads == last.workloads
                and incoming.nodes == last.nodes
                and incoming.datasets == last.datasets
            )
            if not same:
                inventory, last = convert.inventory(incoming), incoming
            engine.heard(session)
            await engine.cycle([(c.Report(session, incoming.seq, inventory), None)])
            timings.append((time.perf_counter() - start) * 1000)
        commits = engine.writer.commits - commits_before
        await engine.stop()
    timings.sort()
    return {
        "workloads": workloads,
        "nodes": nodes,
        "heartbeats": rounds,
        "p50_ms": round(statistics.median(timings), 3),
        "p99_ms": round(timings[int(0.99 * (len(timings) - 1))], 3),
        "max_ms": round(timings[-1], 3),
        "commits": commits,  # database writes caused by the heartbeats (should be 0)
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", type=int, default=2000)
    ap.add_argument("--nodes", type=int, default=250)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    row = asyncio.run(measure(args.workloads, args.nodes, args.rounds))
    if args.json:
        print(json.dumps({"rows": [row]}))
    else:
        from tabulate import tabulate

        print(tabulate([list(row.values())], headers=list(row)))


if __name__ == "__main__":
    main()
