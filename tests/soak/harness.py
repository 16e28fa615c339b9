"""The soak: a federation of real processes under load and seeded faults, then its invariants.

A broker (with a standby when the database is PostgreSQL) and three simulated sites run as
processes on loopback; each agent reaches each broker through a `TcpProxy` the soak controls.
Client threads submit workloads from several tenants, each with a scripted fate (succeed,
fail, be cancelled), while a fault thread, from one seed, kills agents and the active broker
with SIGKILL and restarts them, and partitions an agent from every broker for longer than
the broker's heartbeat TTL. Then the faults stop, everything is healed, the work drains, and
the checks read the database and the agents' own launch records (their logs):

- every acknowledged submit is stored, and every stored workload ended in one terminal state;
- unanswered submits are sent again under their request id: no (tenant, request id) made two
  workloads, and each answer named the workload stored for its id;
- each scripted fate came true (or the workload failed for an infrastructure reason, counted);
- no attempt was launched twice; no launch found its site full (the broker never over-committed);
- the subsidy ledger balances (its rows, the broker's book and its usage report agree per
  tenant and program; each attempt reserved once and settled or released at most once, by a
  row that undoes its hold; nothing held once all has ended), and no budget went negative.
"""

from __future__ import annotations

import dataclasses
import hashlib
import queue
import random
import re
import signal
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
import yaml
from tabulate import tabulate

from broker import ledger
from broker.client import Client, ClientError
from broker.lifecycle import TERMINAL
from broker.localfed import LocalFederation
from broker.spec import parse_spec
from broker.store import LedgerRow
from tests.soak.proxy import TcpProxy

SITES = ("site-a", "site-b", "site-c")
# Unanswered submits sent again under their request id (any other refusal is final).
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
TENANTS = {  # name -> subsidy budget (HK$), or None for a tenant that pays full price
    "tenant-0": 12.0,
    "tenant-1": 5.0,
    "tenant-2": None,
    "tenant-3": None,
}
NODES_PER_SITE = 4
GPUS_PER_NODE = 8
HEARTBEAT_TTL_S = 2.0
LAUNCHED = re.compile(r"launched (wl-[0-9a-f]+)#(\d+) on the")
FATES = ("succeed", "fail", "cancel")


@dataclasses.dataclass
class Plan:
    db_url: str
    brokers: int = 1  # 2: a standby on the same database (PostgreSQL)
    seconds: float = 30.0  # how long faults and submits go on
    submit_per_s: float = 30.0
    seed: int = 1
    drain_timeout_s: float = 180.0


@dataclasses.dataclass
class Report:
    did: Counter[str] = dataclasses.field(default_factory=Counter)
    found: dict[str, Any] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)

    def table(self) -> str:
        did = tabulate(sorted(self.did.items()), headers=["what the soak did", "count"])
        found = tabulate([(k, v) for k, v in self.found.items()], headers=["what it found", "value"])
        problems = "\n".join(f"PROBLEM: {p}" for p in self.problems) or "no problems found"
        return f"{did}\n\n{found}\n\n{problems}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def write_config(workdir: Path, tokens: dict[str, str]) -> Path:
    config = {
        "heartbeat_ttl_s": HEARTBEAT_TTL_S,
        "requeue_grace_s": 1.0,
        "subsidy_programs": [{"name": "aiss", "rate": 0.7}],
        "sites": [
            {
                "name": site,
                "backends": ["ray", "kubernetes"],
                "subsidy_programs": ["aiss"] if site != "site-c" else [],
                "gpu_prices_hkd_per_hour": {"H800": 38.0 - 3 * i},
                "agent_token_sha256": _digest(tokens[site]),
            }
            for i, site in enumerate(SITES)
        ],
        "tenants": [
            {
                "name": name,
                "token_sha256": _digest(tokens[name]),
                "quota_gpus": 48,
                **({"subsidy": {"program": "aiss", "budget_hkd": budget}} if budget is not None else {}),
            }
            for name, budget in TENANTS.items()
        ],
        "operators": [{"name": "sre", "token_sha256": _digest(tokens["sre"])}],
    }
    path = workdir / "federation.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_agent_configs(workdir: Path) -> dict[str, Path]:
    paths = {}
    for site in SITES:
        agent = {
            "site": site,
            "broker": "127.0.0.1:1",  # replaced by the proxies at start
            "heartbeat_s": 0.5,
            "backend": {
                "kind": "simulated",
                "node_groups": [
                    {
                        "count": NODES_PER_SITE,
                        "name_prefix": f"{site}-h800",
                        "gpu_model": "H800",
                        "gpus": GPUS_PER_NODE,
                        "gpu_memory_gb": 80,
                        "cpus": 128,
                        "memory_gb": 1024,
                    }
                ],
            },
        }
        paths[site] = workdir / f"{site}.yaml"
        paths[site].write_text(yaml.safe_dump(agent))
    return paths


class Soak:
    def __init__(self, workdir: Path, plan: Plan) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.report = Report()
        self.tokens = {name: f"soak-{name}-{plan.seed}" for name in (*SITES, *TENANTS, "sre")}
        self.fed = LocalFederation(
            workdir,
            config=write_config(workdir, self.tokens),
            agents=write_agent_configs(workdir),
            db_url=plan.db_url,
            tokens=self.tokens,
            brokers=plan.brokers,
        )
        # One proxy per (site, broker): a partition cuts a site off from every broker.
        self.proxies = {
            site: [TcpProxy(endpoint) for endpoint in self.fed.broker_endpoints.values()] for site in SITES
        }
        self.fates: dict[str, str] = {}  # acknowledged workload -> its scripted fate
        self.requests: dict[tuple[str, str], str] = {}  # (tenant, request id) -> acknowledged workload
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._cancels: queue.Queue[tuple[float, str]] = queue.Queue()

    # ------------------------------------------------------------------ the run

    def run(self) -> Report:
        fed = self.fed
        try:
            fed.start_broker("broker")
            for name in list(fed.broker_endpoints)[1:]:
                fed.start_broker(name, active=False)
            for site in SITES:
                self._start_agent(site)
            fed.wait_healthy(list(SITES))
            workers = [
                threading.Thread(target=self._submit, args=(tenant, self.rng.randrange(2**32)), daemon=True)
                for tenant in TENANTS
            ]
            workers.append(threading.Thread(target=self._cancel, daemon=True))
            for worker in workers:
                worker.start()
            started = time.monotonic()
            self._faults(started + self.plan.seconds)
            self._stop.set()
            for worker in workers:
                worker.join(30)
            self.report.did["seconds of faults and submits"] = round(time.monotonic() - started)
            self._heal()
            self._drain()
            self._check()
        finally:
            fed.close()
            for proxies in self.proxies.values():
                for proxy in proxies:
                    proxy.close()
        return self.report

    def _start_agent(self, site: str) -> None:
        self.fed.start_agent(site, broker=",".join(p.address for p in self.proxies[site]))

    # ------------------------------------------------------------------ load

    def _spec(self, rng: random.Random, tenant: str, fate: str) -> Any:
        gpus = rng.choice((1, 2, 4, 8))
        env = {"FEDBROKER_SIM_SECONDS": f"{rng.uniform(0.2, 1.5):.2f}"}
        if fate == "fail":
            env["FEDBROKER_SIM_EXIT_CODE"] = "3"
        return parse_spec(
            {
                "name": f"soak-{fate}",
                "backend": "ray",
                "ray": {"entrypoint": "python -c pass"},
                "resources": {
                    "gpus_per_replica": gpus,
                    "gpu_model": "H800",
                    "replicas": rng.choice((1, 1, 1, 2)),
                },
                "subsidy": "preferred" if TENANTS[tenant] is not None else "none",
                "estimated_hours": 0.05,
                # A scripted failure fails at once; other attempts may be lost to faults and retried.
                "max_attempts": 1 if fate == "fail" else 3,
                "env": env,
            }
        )

    def _submit(self, tenant: str, seed: int) -> None:
        rng = random.Random(seed)
        period = len(TENANTS) / self.plan.submit_per_s
        client = Client(self.fed.endpoints, self.tokens[tenant], timeout=5)
        try:
            while not self._stop.is_set():
                fate = rng.choices(FATES, weights=(80, 8, 12))[0]
                spec = self._spec(rng, tenant, fate)
                request_id = f"soak-{rng.getrandbits(64):016x}"
                workload = self._submit_until_answered(client, spec, request_id)
                if workload is None:
                    continue
                with self._lock:
                    self.fates[workload.id] = fate
                    self.requests[(tenant, request_id)] = workload.id
                self._count("submits acknowledged")
                if fate == "cancel":
                    self._cancels.put((time.monotonic() + rng.uniform(0.0, 1.5), workload.id))
                time.sleep(rng.expovariate(1 / period))
        finally:
            client.close()

    def _submit_until_answered(self, client: Client, spec: Any, request_id: str) -> Any:
        """The submit, sent again under its request id while unanswered (the client retries on
        UNAVAILABLE for ~30 s itself; a deadline or a longer outage is retried here) until the run
        stops: the broker must answer every retry with the one workload the first made, if any."""
        tries = 0
        while True:
            try:
                workload = client.submit(spec, request_id=request_id).workload
            except ClientError as error:
                self._count(f"submits not answered ({error.code.name})")
                if error.code not in RETRIED or self._stop.is_set():
                    return None  # not acknowledged: stored or not, it is no promise
                tries += 1
                time.sleep(0.2)
                continue
            if tries:
                self._count("submits answered after a retry under their request id")
            return workload

    def _cancel(self) -> None:
        client = Client(self.fed.endpoints, self.tokens["sre"], timeout=5)
        try:
            while not (self._stop.is_set() and self._cancels.empty()):
                try:
                    due, workload_id = self._cancels.get(timeout=0.2)
                except queue.Empty:
                    continue
                time.sleep(max(0.0, due - time.monotonic()))
                for _ in range(20):  # a cancel is retried through a broker's restart
                    try:
                        client.cancel(workload_id)
                        self._count("cancels answered")
                        break
                    except ClientError as error:
                        if error.code.name == "FAILED_PRECONDITION":  # it had ended already
                            self._count("cancels of ended work")
                            break
                        time.sleep(0.5)
        finally:
            client.close()

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.report.did[what] += n

    # ------------------------------------------------------------------ faults

    def _faults(self, until: float) -> None:
        rng, fed = self.rng, self.fed
        faults: list[str] = []
        rounds = 0
        # Until the time is up, and at least one whole round: every kind of fault at least once.
        while time.monotonic() < until or rounds < 1 or faults:
            time.sleep(rng.uniform(1.0, 3.0))
            if not faults:  # every kind in each round, in a seeded order
                faults = ["kill agent", "kill agent", "partition agent", "kill broker"]
                rng.shuffle(faults)
                rounds += 1
            fault = faults.pop()
            site = rng.choice(SITES)
            if fault == "kill agent":
                fed.stop(f"agent-{site}", signal.SIGKILL)
                time.sleep(rng.uniform(0.2, 2.0))
                self._start_agent(site)
            elif fault == "partition agent":
                for proxy in self.proxies[site]:
                    proxy.partition()
                time.sleep(HEARTBEAT_TTL_S * rng.uniform(1.5, 3.0))  # longer than the TTL
                for proxy in self.proxies[site]:
                    proxy.heal()
            else:
                active = fed.active_broker() or "broker"
                fed.stop(active, signal.SIGKILL)
                if self.plan.brokers > 1:
                    fed.start_broker(active, active=False)  # the standby takes over meanwhile
                else:
                    fed.start_broker(active)
            self._count(f"faults: {fault}")

    def _heal(self) -> None:
        for proxies in self.proxies.values():
            for proxy in proxies:
                proxy.heal()
        for site in SITES:
            if f"agent-{site}" not in self.fed.processes:
                self._start_agent(site)
        self.fed.wait(lambda: self.fed.active_broker() is not None, 30, "an active broker")

        def healthy() -> bool:  # asked of whichever broker is active (clients follow it)
            with Client(self.fed.endpoints, self.tokens["sre"], timeout=5) as sre:
                return set(SITES) <= {s.name for s in sre.sites() if s.healthy}

        self.fed.wait(healthy, 60, "every site to be healthy")

    def _drain(self) -> None:
        engine = sa.create_engine(self.fed.db_url)
        try:

            def drained() -> bool:
                with engine.connect() as conn:
                    states = conn.execute(sa.text("SELECT DISTINCT state FROM workloads")).all()
                return all(state in TERMINAL for (state,) in states)

            started = time.monotonic()
            self.fed.wait(drained, self.plan.drain_timeout_s, "every workload to end")
            self.report.did["seconds to drain"] = round(time.monotonic() - started)
        except TimeoutError:
            self.report.problems.append(f"work did not drain in {self.plan.drain_timeout_s:.0f} s")
        finally:
            engine.dispose()

    # ------------------------------------------------------------------ checks

    def _check_requests(self, made: list[Any]) -> None:
        """Idempotent submit: no (tenant, request id) made two workloads, and each acknowledged one
        names the workload its answer gave."""
        found, problems = self.report.found, self.report.problems
        by_request = Counter((r.tenant, r.request_id) for r in made)
        twice = [key for key, n in by_request.items() if n > 1]
        found["request ids that made two workloads"] = len(twice)
        if twice:
            problems.append(f"{len(twice)} request ids made two workloads, e.g. {twice[:3]}")
        stored = {(r.tenant, r.request_id): r.id for r in made}
        wrong = [(key, wid, stored.get(key)) for key, wid in self.requests.items() if stored.get(key) != wid]
        found["acknowledged request ids stored as another workload"] = len(wrong)
        if wrong:
            problems.append(f"{len(wrong)} answers named another workload than stored, e.g. {wrong[:3]}")

    def _check(self) -> None:
        found, problems = self.report.found, self.report.problems
        engine = sa.create_engine(self.fed.db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id, state, attempt, reason FROM workloads")).all()
                no_room = conn.execute(
                    sa.text("SELECT count(*) FROM workload_events WHERE message LIKE 'no room%'")
                ).scalar_one()
                money = money_findings(conn)
                made = conn.execute(
                    sa.text("SELECT tenant, request_id, id FROM workloads WHERE request_id IS NOT NULL")
                ).all()
        finally:
            engine.dispose()
        self._check_requests(made)
        stored = {r.id: r for r in rows}
        states = Counter(r.state for r in rows)
        found["workloads stored"] = len(rows)
        for state in sorted(states):
            found[f"  {state}"] = states[state]
        lost = set(self.fates) - set(stored)
        found["acknowledged but not stored"] = len(lost)
        if lost:
            problems.append(f"{len(lost)} acknowledged workloads are not stored, e.g. {sorted(lost)[:3]}")
        unended = [r.id for r in rows if r.state not in TERMINAL]
        found["not in a terminal state"] = len(unended)
        if unended:
            problems.append(f"{len(unended)} workloads never ended, e.g. {unended[:3]}")
        # Scripted fates.
        wrong, infra = [], 0
        for wid, fate in self.fates.items():
            row = stored.get(wid)
            if row is None or row.state not in TERMINAL:
                continue
            if fate == "succeed" and row.state != "SUCCEEDED":
                if row.state == "FAILED" and row.reason not in ("", "exit_code"):
                    infra += 1  # lost to faults more often than it may be retried
                else:
                    wrong.append((wid, fate, row.state, row.reason))
            elif fate == "fail" and row.state != "FAILED":
                wrong.append((wid, fate, row.state, row.reason))
        found["scripted successes failed by faults (infrastructure)"] = infra
        found["fates that did not come true"] = len(wrong)
        if wrong:
            problems.append(f"{len(wrong)} scripted fates did not come true, e.g. {wrong[:3]}")
        # Launch records: the agents' own logs.
        launches: Counter[tuple[str, str]] = Counter(
            m.groups()
            for site in SITES
            for m in LAUNCHED.finditer(self.fed.log_tail(f"agent-{site}", lines=10_000_000))
        )
        twice = [key for key, n in launches.items() if n > 1]
        found["attempts launched"] = sum(launches.values())
        found["attempts launched twice"] = len(twice)
        if twice:
            problems.append(f"{len(twice)} attempts were launched twice, e.g. {twice[:3]}")
        found["launches that found their site full"] = no_room
        if no_room:
            problems.append(f"{no_room} launches found no room: the broker over-committed a site")
        found.update(money["found"])
        problems.extend(money["problems"])


def money_findings(conn: sa.Connection) -> dict[str, Any]:
    """The subsidy ledger from its rows alone (broker/ledger.py), once every workload has ended:
    no budget negative or overspent; the ledger balances (per tenant and program, what the rows
    hold and spent is what the broker's book and usage report say); each attempt reserved once,
    closed at most once by a row that undoes exactly its hold; nothing still held."""
    found: dict[str, Any] = {}
    problems: list[str] = []
    table = LedgerRow.__table__  # type: ignore[attr-defined]
    rows = [r._asdict() for r in conn.execute(sa.select(table).order_by(table.c.seq))]
    zero = Decimal(0)
    reserved: dict[tuple[str, int], dict[str, Any]] = {}
    closed: Counter[tuple[str, int]] = Counter()
    unbalanced = 0
    held: dict[tuple[str, str], Decimal] = {}  # (tenant, program) -> held now
    spent: dict[tuple[str, str], Decimal] = {}  # (tenant, program) -> the program paid
    for row in rows:
        key = (row["workload_id"], row["attempt"])
        account = (row["tenant"], row["program"] or "")
        held[account] = held.get(account, zero) + row["held_program_hkd"]
        if row["kind"] == ledger.RESERVE:
            if key in reserved:
                problems.append(f"attempt {key} was reserved twice")
            reserved[key] = row
            continue
        closed[key] += 1
        opened = reserved.get(key)
        if opened is None or row["held_program_hkd"] != -opened["held_program_hkd"]:
            unbalanced += 1
        if row["kind"] == ledger.SETTLE:
            spent[account] = spent.get(account, zero) + row["program_hkd"]
            if (
                row["total_hkd"] != row["program_hkd"] + row["tenant_hkd"]
                or min(row["program_hkd"], row["tenant_hkd"]) < zero
            ):
                unbalanced += 1
    twice = sum(1 for n in closed.values() if n > 1)
    found["ledger rows"] = len(rows)
    found["attempts settled or released twice"] = twice
    if twice:
        problems.append(f"{twice} attempts were settled or released twice")
    found["closing rows that do not undo their reservation"] = unbalanced
    if unbalanced:
        problems.append(f"{unbalanced} ledger rows do not balance")
    still_held = {a: v for a, v in held.items() if v != zero}
    found["reservations still held with every workload ended"] = len(still_held)
    if still_held:
        problems.append(f"budget still held after every workload ended: {still_held}")
    # The broker's own sums (its book, its usage report) are these rows' sums.
    book = ledger.Book.load(conn)
    report = ledger.usage(conn, ledger.UsageQuery(by=("tenant", "program")))
    reported = {(r["tenant"], r["program"] or ""): r["program_hkd"] for r in report}
    if {a: v for a, v in reported.items() if v} != {a: v for a, v in spent.items() if v}:
        problems.append(f"usage report {reported} is not the settlements' sums {spent}")
    for tenant, budget in TENANTS.items():
        if budget is None:
            continue
        used = sum((v for (t, _), v in spent.items() if t == tenant), zero)
        used += sum((v for (t, _), v in held.items() if t == tenant), zero)
        balance = book.balances.get(tenant, ledger.Balance())
        found[f"{tenant}: subsidy spent of HK$ {budget:.0f}"] = f"{used:.2f}"
        if balance.budget_used() != used:
            problems.append(f"{tenant}: the book says HK$ {balance.budget_used()} used, the rows {used}")
        left = ledger.exact(budget) - used
        if left < zero or used < zero:
            problems.append(f"{tenant}'s budget went negative: HK$ {used} used of HK$ {budget:.2f}")
    return {"found": found, "problems": problems}
