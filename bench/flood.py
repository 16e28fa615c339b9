"""A flood from one tenant against another's reads: the per-tenant submit limit at work.

    .venv/bin/python bench/flood.py            # a table
    .venv/bin/python bench/flood.py --json     # {"rows": [...]}

Starts a real broker (`fedbroker serve`, SQLite, no agents: every accepted workload queues)
and measures tenant harbour-robotics' Get latency (p50, p99; --gets sequential calls on one
workload) three times: idle; while tenant lion-rock-ai floods Submit from a separate process
(--flooders concurrent callers, as fast as answers come) under the default limits
(`limits:` in federation.yaml: 50 submits/s, bursts of 200); and, for comparison, the same
flood with the limits raised out of the way. The claim checked: under the default limits the
flooded p99 stays within 2x of idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc
import yaml
from fedbroker.v1 import workload_service_pb2 as w
from fedbroker.v1 import workload_service_pb2_grpc as wg

from broker.localfed import DEV_TOKENS, EXAMPLES, LocalFederation
from broker.spec import parse_spec, spec_to_proto

SPEC = parse_spec(
    {
        "name": "flood",
        "backend": "ray",
        "ray": {"entrypoint": "python x.py"},
        "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
    }
)


def _flood(endpoint: str, flooders: int, stop_at: float, results: Any) -> None:
    async def one(stub: wg.WorkloadServiceStub, codes: Counter[str]) -> None:
        request = w.SubmitRequest(spec=spec_to_proto(SPEC))
        metadata = (("authorization", f"Bearer {DEV_TOKENS['lion-rock-ai']}"),)
        while time.monotonic() < stop_at:
            try:
                await stub.Submit(request, metadata=metadata, timeout=10)
                codes["OK"] += 1
            except grpc.aio.AioRpcError as error:
                codes[error.code().name] += 1

    async def main() -> Counter[str]:
        codes: Counter[str] = Counter()
        async with grpc.aio.insecure_channel(endpoint) as channel:
            stub = wg.WorkloadServiceStub(channel)
            await asyncio.gather(*(one(stub, codes) for _ in range(flooders)))
        return codes

    results.put(dict(asyncio.run(main())))


def _gets(endpoint: str, workload_id: str, count: int) -> list[float]:
    metadata = (("authorization", f"Bearer {DEV_TOKENS['harbour-robotics']}"),)
    out = []
    with grpc.insecure_channel(endpoint) as channel:
        stub = wg.WorkloadServiceStub(channel)
        request = w.GetWorkloadRequest(id=workload_id)
        for _ in range(20):  # warm the channel
            stub.Get(request, metadata=metadata, timeout=10)
        for _ in range(count):
            started = time.perf_counter()
            stub.Get(request, metadata=metadata, timeout=10)
            out.append((time.perf_counter() - started) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def run(limits: dict[str, Any] | None, gets: int, flooders: int, workdir: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    if limits:
        data["limits"] = limits
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "federation.yaml"
    config.write_text(yaml.safe_dump(data))
    rows = []
    with LocalFederation(workdir / "fed", config=config) as fed:
        fed.start_broker()
        with fed.client("harbour-robotics") as client:
            target = client.submit(SPEC).workload.id
        idle = _gets(fed.endpoint, target, gets)
        label = "raised limits" if limits else "default limits"
        rows.append({"phase": "idle", "limits": label, **_summary(idle), "flood": {}})
        results: multiprocessing.Queue[dict[str, int]] = multiprocessing.Queue()
        flood_s = 3.0 + gets * 0.004
        flooder = multiprocessing.Process(
            target=_flood, args=(fed.endpoint, flooders, time.monotonic() + flood_s, results)
        )
        flooder.start()
        time.sleep(1.0)  # the flood under way
        flooded = _gets(fed.endpoint, target, gets)
        codes = results.get(timeout=flood_s + 30)
        flooder.join()
        rows.append({"phase": "flood", "limits": label, **_summary(flooded), "flood": codes})
    return rows


def _summary(values: list[float]) -> dict[str, float]:
    return {"gets": len(values), "p50_ms": round(_p(values, 50), 3), "p99_ms": round(_p(values, 99), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gets", type=int, default=5000)  # p99 of 1,000 is the 10th-worst call: noisy
    parser.add_argument("--flooders", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fedbroker-flood-") as tmp:
        rows = run(None, args.gets, args.flooders, Path(tmp) / "default")
        raised = {"submits_per_s": 1e9, "submit_burst": 1_000_000_000, "queued_per_tenant": 1_000_000_000}
        rows += run(raised, args.gets, args.flooders, Path(tmp) / "raised")
    idle = rows[0]["p99_ms"]
    ratio = rows[1]["p99_ms"] / idle if idle else float("inf")
    if args.json:
        print(json.dumps({"rows": rows, "flooded_p99_over_idle_default_limits": round(ratio, 2)}))
        return
    print(f"{'limits':<16}{'phase':<8}{'Gets':>6}{'p50 ms':>9}{'p99 ms':>9}  flood (Submit answers)")
    for row in rows:
        flood = ", ".join(f"{k} {v:,}" for k, v in sorted(row["flood"].items())) or "-"
        head = f"{row['limits']:<16}{row['phase']:<8}{row['gets']:>6}"
        print(f"{head}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}  {flood}")
    verdict = "within" if ratio <= 2 else "NOT within"
    print(f"default limits: flooded p99 / idle p99 = {ratio:.2f} ({verdict} 2x)")


if __name__ == "__main__":
    main()
