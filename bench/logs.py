"""Benchmark of `fedbroker logs`: the broker relaying a real Ray job's output from Sandy Ridge's agent.

    .venv/bin/python bench/logs.py              # a table
    .venv/bin/python bench/logs.py --json       # {"rows": [...]}

Method: a broker and two agents as real processes on loopback (broker/localfed.py),
Sandy Ridge's agent on a real local Ray head (broker/localray.py). One Ray job prints
LINES lines and ends. Then, through the SDK (gRPC, as the CLI does):
  1. the first chunk of `logs --tail 10`: the round trip client -> broker -> agent ->
     Ray's get_job_logs -> agent -> broker -> client, median of 20;
  2. the whole log: lines per second from the call to the last line, median of 5;
  3. submit latency (Submit answered after its commit) alone and while whole-log relays run
     back to back, median of 50 each: the relay stays out of the engine's cycle, but shares
     the broker's event loop (and, here, two CPU cores with Ray and the agents).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.localfed import LocalFederation
from broker.localray import local_ray_head
from broker.spec import WorkloadSpec, parse_spec

LINES = 100_000
TENANT = "lion-rock-ai"


def spec(name: str, entrypoint: str, **changes: Any) -> WorkloadSpec:
    data: dict[str, Any] = {
        "name": name,
        "backend": "ray",
        "ray": {"entrypoint": entrypoint},
        "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
        "sites": ["sandy-ridge"],
        **changes,
    }
    return parse_spec(data)


def stats(name: str, samples: list[float], unit: str, scale: float = 1000.0) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "measure": name,
        "n": len(samples),
        "median": round(statistics.median(ordered) * scale, 2),
        "p90": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))] * scale, 2),
        "unit": unit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fb-bench-logs-") as tmp, local_ray_head(4, "H800") as address:
        backends = {"sandy-ridge": {"kind": "ray", "address": address, "poll_s": 0.2}}
        with LocalFederation(Path(tmp), agent_overrides={"heartbeat_s": 1}, backends=backends) as fed:
            fed.start_broker()
            for site in fed.agent_configs:
                fed.start_agent(site)
            fed.wait_healthy(timeout=60)
            with fed.client(TENANT) as client:
                loud = f'python -c \'for i in range({LINES}): print("line", i, "x" * 60)\''
                workload_id = client.submit(spec("loud", loud)).workload.id
                for _ in client.watch(workload_id, timeout=300):
                    pass

                first: list[float] = []
                for _ in range(20):
                    start = time.perf_counter()
                    next(iter(client.logs(workload_id, tail=10, timeout=60)))
                    first.append(time.perf_counter() - start)
                rows.append(stats("first chunk of logs --tail 10", first, "ms"))

                rates: list[float] = []
                for _ in range(5):
                    start = time.perf_counter()
                    count = sum(len(b.lines) for b in client.logs(workload_id, timeout=300))
                    rates.append(count / (time.perf_counter() - start))
                    assert count >= LINES, count
                rows.append(stats(f"whole log ({LINES:,} lines of 70 chars)", rates, "lines/s", 1.0))

                quiet = spec(
                    "quiet", "python -c 'pass'", sites=["cyberport"], env={"FEDBROKER_SIM_SECONDS": "0"}
                )
                rows.append(stats("submit alone", submit_times(client, quiet, 50), "ms"))
                stop = threading.Event()

                def relay_forever() -> None:
                    with fed.client(TENANT) as reader:
                        while not stop.is_set():
                            for _ in reader.logs(workload_id, timeout=300):
                                pass

                relay = threading.Thread(target=relay_forever, daemon=True)
                relay.start()
                time.sleep(1.0)
                rows.append(stats("submit while whole logs relay", submit_times(client, quiet, 50), "ms"))
                stop.set()
                relay.join(timeout=120)
    if args.json:
        print(json.dumps({"rows": rows}, indent=2))
        return
    for r in rows:
        print(
            f"{r['measure']:<44} n={r['n']:<3} median {r['median']:>10,} {r['unit']:<8} p90 {r['p90']:>10,}"
        )


def submit_times(client: Any, workload: WorkloadSpec, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        client.submit(workload)
        times.append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()
