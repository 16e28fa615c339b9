"""End-to-end benchmark: a real broker and K simulated site agents as processes on loopback,
driven by several client processes over gRPC, on SQLite and on PostgreSQL (fsync on).

    .venv/bin/python bench/e2e.py                       # SQLite and PostgreSQL, K = 2 and 10, a table
    .venv/bin/python bench/e2e.py --db sqlite --sites 2 --quick
    .venv/bin/python bench/e2e.py --json                # {"rows": [...]}
    .venv/bin/python bench/e2e.py --race --peer slurm   # time-to-RUNNING side by side with Slurm

Each row starts a fresh broker (`fedbroker serve`) and K agents (`fedbroker agent`, simulated
backend, N nodes of 8 GPUs in all, split evenly), waits until every site is healthy, then:

1. latency at 100 submits/s offered (open loop, one client process) for --latency-s seconds:
   one-GPU workloads that run 1 s, so every one is placed when it arrives. Submit to PLACED is
   the Submit call's latency (the broker answers after the commit that stored it, and the
   answer says PLACED); submit to RUNNING is from the client's send time to the RUNNING event
   the broker stored (its `at`, the broker's wall clock, read back from the database);
2. saturation: --clients client processes, each keeping --in-flight Submits outstanding, for
   --saturation-s seconds; submits/s counts answered Submits (each durable: the broker answers
   only after its commit). The default 2 x 256 outstanding is past the knee: with fewer, the
   figure measures the round trip (each cycle waits for its commit, and a closed loop offers
   only what its outstanding calls allow), not the broker's capacity; `--in-flight` sweeps it.
   Broker CPU per submit is the broker process's CPU time (user + system, from /proc) over
   that phase divided by the submits; RSS is the broker's at the end. A second table says
   where the rest of the machine's CPU went over the same window (the K agents, the client
   processes, and every core's busy time, kernel included): the broker shares these cores
   with them here, so a figure near the machine's limit is the machine's, not the broker's.

`--race` instead times N one-node 8-GPU jobs to RUNNING on N nodes (N = 64, 500, 2,000): an
operator pauses placement (`fedbroker pause`), the N jobs are submitted, placement resumes, and
the clock runs from the Resume call until the database shows all N RUNNING (polled every 10 ms).
With `--peer slurm` the same shape runs on a real Slurm (the peer script starts it on loopback
with the partition DOWN while jobs are submitted, then times from setting it UP), one after the
other so the two never share the cores, and the table shows both times and the ratio.

`--fronts 0,1` (the default) runs each row with the broker alone and with one front process
(`serve --fronts 1`: the public port served by a process of its own that relays calls to the
engine's in batches); the broker's CPU and RSS then include its fronts'. The race runs the
broker alone.

`--repeat R` runs every (database, K, fronts) row R times, interleaved (all rows once, then
again), so a drift in the machine's speed falls on each alike; a third table gives each row's median, lowest
and highest submits/s and its worst p99s (`spread` in the JSON). This machine's speed drifts by
about 15% over an hour, more than most changes worth measuring: compare with R >= 3.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy
import yaml

from broker.client import Client
from broker.devdb import postgres_cluster
from broker.listen import free_port

REPO = Path(__file__).resolve().parents[1]
PEER_SCRIPT = REPO.parent / "shared" / "peers" / "slurm" / "run_peer.sh"
TENANTS = 4
ROW_KEYS = (
    "db",
    "sites",
    "fronts",
    "nodes",
    "offered_per_s",
    "submits_per_s",
    "placed_p50_ms",
    "placed_p99_ms",
    "running_p50_ms",
    "running_p99_ms",
    "broker_cpu_ms_per_submit",
    "broker_rss_mb",
)
# Where the saturation phase's CPU went (per answered Submit), and how busy the machine was:
# the broker shares the machine with K agents and the client processes in this benchmark.
CPU_KEYS = (
    "db",
    "sites",
    "fronts",
    "submits_per_s",
    "broker_cpu_ms_per_submit",
    "agents_cpu_ms_per_submit",
    "clients_cpu_ms_per_submit",
    "machine_cpu_ms_per_submit",
    "machine_busy_pct",
)
SPREAD_KEYS = (
    "db",
    "sites",
    "fronts",
    "runs",
    "submits_per_s_median",
    "submits_per_s_min",
    "submits_per_s_max",
    "placed_p99_ms_max",
    "running_p99_ms_max",
)
RACE_KEYS = ("db", "sites", "nodes", "jobs", "fedbroker_s", "broker_cpu_ms_per_job", "slurm_s", "ratio")


# ---------------------------------------------------------------------------- the federation


class Federation:
    """A broker and K agents on loopback, with generated tokens; stopped on exit."""

    def __init__(
        self, workdir: Path, db_url: str, sites: int, nodes: int, heartbeat_s: float = 2.0, fronts: int = 0
    ) -> None:
        self.workdir = workdir
        self.fronts = fronts
        self.db_url = db_url
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.tokens = {name: secrets.token_urlsafe(16) for name in self._names(sites)}
        self.site_names = [f"site-{i:02d}" for i in range(sites)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        digest = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in self.tokens.items()}
        config = {
            "heartbeat_ttl_s": 15,
            "requeue_grace_s": 60,
            # The engine's capacity is measured, not the per-tenant rate limit (50/s by default),
            # which 4 tenants at saturation would otherwise hit first.
            "limits": {"submits_per_s": 1_000_000, "submit_burst": 1_000_000},
            "sites": [
                {
                    "name": name,
                    "backends": ["kubernetes", "ray"],
                    "gpu_prices_hkd_per_hour": {"H800": 30.0 + i},
                    "agent_token_sha256": digest[name],
                }
                for i, name in enumerate(self.site_names)
            ],
            "tenants": [
                {"name": f"tenant-{t}", "token_sha256": digest[f"tenant-{t}"]} for t in range(TENANTS)
            ],
            "operators": [{"name": "sre", "token_sha256": digest["sre"]}],
        }
        self.config = workdir / "federation.yaml"
        self.config.write_text(yaml.safe_dump(config))
        self.agent_configs = {}
        for i, name in enumerate(self.site_names):
            count = nodes // sites + (1 if i < nodes % sites else 0)
            agent = {
                "site": name,
                "broker": self.endpoint,
                "heartbeat_s": heartbeat_s,
                "backend": {
                    "kind": "simulated",
                    "node_groups": [
                        {
                            "count": count,
                            "name_prefix": f"{name}-n",
                            "gpu_model": "H800",
                            "gpus": 8,
                            "gpu_memory_gb": 80,
                            "cpus": 128,
                            "memory_gb": 1024,
                        }
                    ],
                },
            }
            path = workdir / f"agent-{name}.yaml"
            path.write_text(yaml.safe_dump(agent))
            self.agent_configs[name] = path

    @staticmethod
    def _names(sites: int) -> list[str]:
        return [f"site-{i:02d}" for i in range(sites)] + [f"tenant-{t}" for t in range(TENANTS)] + ["sre"]

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115  (owned by the process)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "broker", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=self.workdir,
        )

    def start(self) -> None:
        args = ["serve", "--config", str(self.config), "--db", self.db_url, "--listen", self.endpoint]
        self._spawn("broker", [*args, "--fronts", str(self.fronts), "--log-level", "WARNING"])
        self._wait(lambda: self.client().serving(), "the broker to serve")
        for name, path in self.agent_configs.items():
            self._spawn(
                f"agent-{name}",
                ["agent", "--config", str(path), "--log-level", "WARNING"],
                {"FEDBROKER_AGENT_TOKEN": self.tokens[name]},
            )
        wanted = set(self.site_names)

        def healthy() -> bool:
            with self.client() as client:
                return wanted <= {s.name for s in client.sites() if s.healthy}

        self._wait(healthy, "every site to be healthy", timeout=120)

    def client(self, who: str = "sre") -> Client:
        return Client(self.endpoint, self.tokens[who], timeout=60)

    def broker_pid(self) -> int:
        return self.processes["broker"].pid

    def _wait(self, condition: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")
            try:
                if condition():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}")

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def federation(
    db: str, sites: int, nodes: int, pg_server: str | None, fronts: int = 0
) -> Iterator[Federation]:
    workdir = Path(tempfile.mkdtemp(prefix="fedbroker-e2e-"))
    try:
        if db == "sqlite":
            url = f"sqlite:///{workdir / 'broker.db'}"
        else:
            assert pg_server is not None
            from broker.devdb import create_database

            url = create_database(pg_server, f"bench_{secrets.token_hex(4)}")
        fed = Federation(workdir, url, sites, nodes, fronts=fronts)
        try:
            fed.start()
            yield fed
        finally:
            fed.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------- clients


def _spec(gpus: int, seconds: float, name: str = "bench") -> Any:
    from fedbroker.v1 import types_pb2

    return types_pb2.WorkloadSpec(
        name=name,
        backend="ray",
        ray=types_pb2.RaySpec(entrypoint="python -c pass"),
        resources=types_pb2.Resources(gpus_per_replica=gpus, gpu_model="H800", replicas=1),
        subsidy="none",
        estimated_hours=1.0,
        max_attempts=1,
        env={"FEDBROKER_SIM_SECONDS": str(seconds)},
    )


async def _submitter(
    endpoint: str, token: str, *, rate: float, in_flight: int, seconds: float, gpus: int, run_s: float
) -> list[tuple[str, float, float, int]]:
    """Submit for `seconds`: open loop at `rate`/s, or closed loop with `in_flight` outstanding.

    Returns (workload id, sent at (wall), latency s, state) per answered Submit."""
    import grpc
    from fedbroker.v1 import workload_service_pb2, workload_service_pb2_grpc

    results: list[tuple[str, float, float, int]] = []
    metadata = (("authorization", f"Bearer {token}"),)
    spec = _spec(gpus, run_s)
    async with grpc.aio.insecure_channel(endpoint) as channel:
        stub = workload_service_pb2_grpc.WorkloadServiceStub(channel)

        async def one() -> None:
            # Each with its own request id, as the CLI and the SDK send them (idempotent submit).
            request = workload_service_pb2.SubmitRequest(spec=spec, request_id=str(uuid.uuid4()))
            sent = time.time()
            start = time.perf_counter()
            try:
                response = await stub.Submit(request, metadata=metadata, timeout=60)
            except grpc.aio.AioRpcError:
                return
            results.append((response.workload.id, sent, time.perf_counter() - start, response.workload.state))

        end = time.perf_counter() + seconds
        if rate > 0:
            tasks = []
            next_at = time.perf_counter()
            while next_at < end:
                tasks.append(asyncio.create_task(one()))
                next_at += 1.0 / rate
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await asyncio.gather(*tasks)
        else:

            async def loop() -> None:
                while time.perf_counter() < end:
                    await one()

            await asyncio.gather(*(loop() for _ in range(in_flight)))
    return results


def _client_process(args: tuple[Any, ...]) -> tuple[list[tuple[str, float, float, int]], float]:
    """One client process's answered Submits, and the CPU seconds it spent making them."""
    endpoint, token, kwargs = args
    started = time.process_time()
    results = asyncio.run(_submitter(endpoint, token, **kwargs))
    return results, time.process_time() - started


def _client_ready(_: int) -> None:
    import grpc  # noqa: F401  (imported before the clock starts, not on it)
    from fedbroker.v1 import workload_service_pb2_grpc  # noqa: F401


@dataclass
class Drive:
    """What a drive did: the answered Submits (workload id, sent at (wall), latency s, state),
    and where the CPU went meanwhile (the client processes' own, and the whole machine's)."""

    results: list[tuple[str, float, float, int]]
    clients_cpu_s: float
    watched_cpu_s: dict[str, float]  # the named federation processes' CPU seconds
    machine_busy_s: float  # every core's non-idle time: all processes and the kernel
    wall_s: float

    def per_submit_ms(self, seconds: float) -> float:
        return round(1000 * seconds / max(1, len(self.results)), 3)


def drive(fed: Federation, processes: int, watch: tuple[str, ...] = (), **kwargs: Any) -> Drive:
    """Submits from `processes` client processes (`_submitter`'s arguments in `kwargs`); the CPU
    of the federation's processes named in `watch` is measured over the same window."""
    jobs = [(fed.endpoint, fed.tokens[f"tenant-{i % TENANTS}"], kwargs) for i in range(processes)]
    pids = {name: fed.processes[name].pid for name in watch}
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_client_ready, range(processes))  # started and imported: the spawn is not measured
        cpu = {name: _proc_cpu_s(pid) for name, pid in pids.items()}
        busy, started = _machine_busy_s(), time.perf_counter()
        parts = pool.map(_client_process, jobs)
        busy, wall = _machine_busy_s() - busy, time.perf_counter() - started
        cpu = {name: _proc_cpu_s(pid) - cpu[name] for name, pid in pids.items()}
    results = [r for part, _ in parts for r in part]
    return Drive(results, sum(seconds for _, seconds in parts), cpu, busy, wall)


# ---------------------------------------------------------------------------- measurements


def _proc_cpu_s(pid: int) -> float:
    """The process's CPU seconds and its live children's (a broker's front processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return own + sum(_proc_cpu_s(child) for child in _children(pid))


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:  # gone meanwhile
        return []


def _machine_busy_s() -> float:
    """CPU seconds every core has spent not idle since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    """The process's resident memory and its children's (a broker's front processes)."""
    children = sum(_proc_rss_mb(child) for child in _children(pid))
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024 + children
    return children


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _running_at(db_url: str, ids: list[str]) -> dict[str, float]:
    url = db_url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sqlalchemy.create_engine(url)
    wanted = set(ids)
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.text("SELECT workload_id, at FROM workload_events WHERE state = 'RUNNING'")
        ).all()
    engine.dispose()
    return {w: at for w, at in rows if w in wanted}


def _wait_running(db_url: str, ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(_running_at(db_url, ids)) < len(ids):
        time.sleep(0.2)


def measure_row(
    db: str, sites: int, nodes: int, args: argparse.Namespace, pg: str | None, fronts: int = 0
) -> dict:
    from fedbroker.v1 import types_pb2

    with federation(db, sites, nodes, pg, fronts) as fed:
        # 1. latency at 100/s offered
        lat = drive(fed, 1, rate=100.0, in_flight=0, seconds=args.latency_s, gpus=1, run_s=1.0).results
        placed = [r for r in lat if r[3] == types_pb2.WORKLOAD_STATE_PLACED]
        _wait_running(fed.db_url, [r[0] for r in placed])
        running_at = _running_at(fed.db_url, [r[0] for r in placed])
        placed_ms = [r[2] * 1000 for r in placed]
        running_ms = [(running_at[r[0]] - r[1]) * 1000 for r in placed if r[0] in running_at]
        # 2. saturation
        agents = tuple(name for name in fed.processes if name.startswith("agent-"))
        name = f"{db}-{sites}-f{fronts}"
        profiler = _start_profile(fed.broker_pid(), args.profile, name) if args.profile else None
        sat = drive(
            fed,
            args.clients,
            watch=("broker", *agents),
            rate=0.0,
            in_flight=args.in_flight,
            seconds=args.saturation_s,
            gpus=1,
            run_s=1.0,
        )
        rss = _proc_rss_mb(fed.broker_pid())
        if profiler is not None:
            profiler.send_signal(2)  # py-spy writes its samples on SIGINT
            profiler.wait(60)
    cores = os.cpu_count() or 1
    return {
        "db": db,
        "sites": sites,
        "fronts": fronts,
        "nodes": nodes,
        "offered_per_s": 100,
        "submits_per_s": round(len(sat.results) / args.saturation_s, 1),
        "placed_p50_ms": round(_pct(placed_ms, 0.50), 1),
        "placed_p99_ms": round(_pct(placed_ms, 0.99), 1),
        "running_p50_ms": round(_pct(running_ms, 0.50), 1),
        "running_p99_ms": round(_pct(running_ms, 0.99), 1),
        "broker_cpu_ms_per_submit": sat.per_submit_ms(sat.watched_cpu_s["broker"]),
        "broker_rss_mb": round(rss, 1),
        "agents_cpu_ms_per_submit": sat.per_submit_ms(sum(sat.watched_cpu_s[a] for a in agents)),
        "clients_cpu_ms_per_submit": sat.per_submit_ms(sat.clients_cpu_s),
        "machine_cpu_ms_per_submit": sat.per_submit_ms(sat.machine_busy_s),
        "machine_busy_pct": round(100 * sat.machine_busy_s / (cores * sat.wall_s), 1),
        "_wall_s": round(sat.wall_s, 1),
        "_placed_at_submit": f"{len(placed)}/{len(lat)}",
    }


def race_fedbroker(
    db: str, sites: int, jobs: int, pg: str | None, profile: str | None = None
) -> tuple[float, float]:
    """Seconds from Resume until all `jobs` one-node 8-GPU jobs are RUNNING; broker CPU ms per job."""
    with federation(db, sites, jobs, pg) as fed, fed.client() as operator:
        operator.pause()  # also opens the channel that resumes: no connection set-up in the timing
        ids = _submit_exactly(fed, jobs)
        url = fed.db_url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = sqlalchemy.create_engine(url)
        count = sqlalchemy.text("SELECT count(*) FROM workloads WHERE state = 'RUNNING'")
        pid = fed.broker_pid()
        profiler = _start_profile(pid, profile, f"race-{db}-{jobs}") if profile else None
        if profiler is not None:
            time.sleep(1.0)  # py-spy attaches before the clock starts
        cpu0 = _proc_cpu_s(pid)
        with engine.connect() as conn:
            t0 = time.perf_counter()
            resumed_at = time.time()
            operator.resume()
            while conn.execute(count).scalar_one() < len(ids):
                conn.commit()  # a fresh snapshot for the next poll
                time.sleep(0.01)
                if time.perf_counter() - t0 > 600:
                    raise TimeoutError("jobs did not all reach RUNNING in 600 s")
            # The broker's own record of when the last job went RUNNING (as Slurm's time is read
            # from its controller's log), not when this poll noticed.
            last = sqlalchemy.text("SELECT max(at) FROM workload_events WHERE state = :state")
            elapsed = conn.execute(last, {"state": "RUNNING"}).scalar_one() - resumed_at
            placed = conn.execute(last, {"state": "PLACED"}).scalar_one() - resumed_at
            print(
                f"  N={jobs}: all PLACED after {placed:.3f} s, all RUNNING after {elapsed:.3f} s",
                file=sys.stderr,
            )
        cpu = _proc_cpu_s(pid) - cpu0
        engine.dispose()
        if profiler is not None:
            profiler.send_signal(2)
            profiler.wait(60)
    return elapsed, 1000 * cpu / jobs


def _submit_exactly(fed: Federation, jobs: int) -> list[str]:
    async def run() -> list[str]:
        import grpc
        from fedbroker.v1 import workload_service_pb2, workload_service_pb2_grpc

        ids: list[str] = []
        request = workload_service_pb2.SubmitRequest(spec=_spec(8, 3600.0))
        async with grpc.aio.insecure_channel(fed.endpoint) as channel:
            stub = workload_service_pb2_grpc.WorkloadServiceStub(channel)
            metadata = (("authorization", f"Bearer {fed.tokens['tenant-0']}"),)
            sem = asyncio.Semaphore(64)

            async def one() -> None:
                async with sem:
                    response = await stub.Submit(request, metadata=metadata, timeout=120)
                    ids.append(response.workload.id)

            await asyncio.gather(*(one() for _ in range(jobs)))
        return ids

    return asyncio.run(run())


def race_slurm(jobs: int) -> float:
    """Slurm's 'all that fit allocated' time for `jobs` one-node 8-GPU jobs on `jobs` nodes."""
    env = {**os.environ, "NODES": str(jobs), "JOBS": str(jobs), "GPUS": "8", "PHASED": "1"}
    env["SUBMIT"] = "array" if jobs > 500 else "par"
    done = subprocess.run(["bash", str(PEER_SCRIPT)], env=env, capture_output=True, text=True, timeout=1800)
    match = re.search(r"\(b\) all that fit allocated \(ctld log\)\s+([\d.]+) s", done.stdout)
    if match is None:
        raise RuntimeError(f"could not read Slurm's time:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return float(match.group(1))


def _start_profile(pid: int, folder: str, name: str) -> subprocess.Popen[bytes]:
    """py-spy samples the broker (collapsed stacks) for the saturation phase."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder) / f"broker-{name}.txt"
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "-p",
            str(pid),
            "-f",
            "raw",
            "-o",
            str(out),
            "-r",
            "200",
            *os.environ.get("PYSPY_FLAGS", "").split(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# Frames on (nearly) every stack: the event loop, click, the interpreter's start-up.
_PLUMBING = re.compile(
    r"\((asyncio|click|<frozen runpy>|threading\.py|selectors\.py|broker/__main__|broker/cli/)"
)


def profile_top(path: Path, top: int = 15) -> str:
    """The functions with the most samples: inclusive (anywhere on the stack) and self (the leaf)."""
    inclusive: dict[str, int] = {}
    leaf: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [
            re.sub(r" \(.*?/(site-packages|lib/python3[.0-9]*|main)/", " (", f) for f in stack.split(";")
        ]
        for frame in set(frames):
            if not _PLUMBING.search(frame):
                inclusive[frame] = inclusive.get(frame, 0) + n
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + n
    lines = [f"{path.name}: {total} samples"]
    for title, table in (("inclusive", inclusive), ("self", leaf)):
        lines.append(f"  top {top} {title}:")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {100 * n / total:5.1f}%  {frame}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- main


def _table(rows: list[dict], keys: tuple[str, ...]) -> str:
    from tabulate import tabulate

    return tabulate([[r.get(k) for k in keys] for r in rows], headers=keys, floatfmt="g")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    ap.add_argument("--sites", default="2,10", help="comma-separated K values")
    ap.add_argument(
        "--fronts", default="0,1", help="comma-separated `serve --fronts` values (0: the broker alone)"
    )
    ap.add_argument("--nodes", type=int, default=500, help="nodes of 8 GPUs in all")
    ap.add_argument("--clients", type=int, default=2, help="client processes at saturation")
    ap.add_argument("--in-flight", type=int, default=256, help="outstanding Submits per client process")
    ap.add_argument("--latency-s", type=float, default=10.0)
    ap.add_argument("--saturation-s", type=float, default=10.0)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 2 s phases, 64 nodes")
    ap.add_argument("--repeat", type=_positive, default=1, help="run each row R times, interleaved")
    ap.add_argument("--race", action="store_true", help="time N jobs to RUNNING (N = --race-jobs)")
    ap.add_argument("--race-jobs", default="64,500,2000")
    ap.add_argument("--peer", choices=["slurm"], help="run the race on a real Slurm too")
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    ap.add_argument("--profile", metavar="DIR", help="py-spy the broker at saturation; top entries to stderr")
    args = ap.parse_args(argv)
    if args.race and args.repeat > 1:
        ap.error("--repeat is for the throughput rows; --race runs each N once")
    if args.quick:
        args.latency_s = args.saturation_s = 2.0
        args.nodes = 64
        args.race_jobs = "64"
    dbs = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_cluster(fsync=True)) if "postgresql" in dbs else None
        rows: list[dict] = []
        keys: tuple[str, ...]
        run_key = ("run",) if args.repeat > 1 else ()  # a column only when there are runs to tell apart
        if args.race:
            keys = RACE_KEYS
            for db in dbs:
                for jobs in (int(j) for j in args.race_jobs.split(",")):
                    seconds, cpu_ms = race_fedbroker(db, 2, jobs, pg, args.profile)
                    row: dict[str, Any] = {
                        "db": db,
                        "sites": 2,
                        "nodes": jobs,
                        "jobs": jobs,
                        "fedbroker_s": round(seconds, 3),
                        "broker_cpu_ms_per_job": round(cpu_ms, 3),
                        "slurm_s": None,
                        "ratio": None,
                    }
                    if args.peer == "slurm":
                        row["slurm_s"] = race_slurm(jobs)
                        row["ratio"] = round(row["slurm_s"] / seconds, 1)
                    rows.append(row)
                    print(_table([row], keys) if not args.json else "", file=sys.stderr)
                    if args.profile:
                        print(
                            profile_top(Path(args.profile) / f"broker-race-{db}-{jobs}.txt"), file=sys.stderr
                        )
        else:
            keys = (*run_key, *ROW_KEYS)
            for run in range(1, args.repeat + 1):
                for db in dbs:
                    for sites in (int(k) for k in args.sites.split(",")):
                        for fronts in (int(f) for f in args.fronts.split(",")):
                            row = {"run": run, **measure_row(db, sites, args.nodes, args, pg, fronts)}
                            rows.append(row)
                            print(json.dumps(row), file=sys.stderr)
                            if args.profile:
                                profile = Path(args.profile) / f"broker-{db}-{sites}-f{fronts}.txt"
                                print(profile_top(profile), file=sys.stderr)
    extra = () if args.race else tuple(k for k in CPU_KEYS if k not in keys)  # the CPU table's own
    spread = spread_rows(rows) if run_key else []
    if args.json:
        report: dict[str, Any] = {"rows": [{k: r[k] for k in (*keys, *extra)} for r in rows]}
        if spread:
            report["spread"] = spread
        print(json.dumps(report))
    else:
        print(_table(rows, keys))
        if extra:
            print("\nwhere the CPU went at saturation, per submit (machine: every process and the kernel)")
            print(_table(rows, (*run_key, *CPU_KEYS)))
        if spread:
            print(f"\nover {args.repeat} interleaved runs of each row")
            print(_table(spread, SPREAD_KEYS))


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: at least 1")
    return value


def spread_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each (database, K) row's submits/s over its runs (median, lowest, highest) and worst p99s."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["db"], row["sites"], row.get("fronts", 0)), []).append(row)
    out = []
    for (db, sites, fronts), runs in groups.items():
        rates = [r["submits_per_s"] for r in runs]
        out.append(
            {
                "db": db,
                "sites": sites,
                "fronts": fronts,
                "runs": len(runs),
                "submits_per_s_median": round(statistics.median(rates), 1),
                "submits_per_s_min": min(rates),
                "submits_per_s_max": max(rates),
                "placed_p99_ms_max": max(r["placed_p99_ms"] for r in runs),
                "running_p99_ms_max": max(r["running_p99_ms"] for r in runs),
            }
        )
    return out


if __name__ == "__main__":
    main()
