"""Drive the real engine in-process on a real database, as the API layer and agents would.

No gRPC: commands go straight to `Engine.post`/`Engine.call`; what the engine sends
an agent is read from the agent session's outbox. Time is the test's: wall clock and
monotonic clock are injected, and `advance` moves both in the engine's tick steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.auth import sha256_hex
from broker.config import FederationConfig, parse_federation
from broker.engine import commands as c
from broker.engine.engine import Engine
from broker.engine.links import AgentSession
from broker.engine.records import Assign, CancelAttempt, ToAgent, WorkloadRecord
from broker.placement import Node
from broker.spec import WorkloadSpec, parse_spec, spec_to_proto
from broker.store import Store

TENANT = "lion-rock-ai"
OTHER = "harbour-robotics"


def federation(**changes: Any) -> FederationConfig:
    data: dict[str, Any] = {
        "heartbeat_ttl_s": 10,
        "requeue_grace_s": 30,
        "subsidy_programs": [{"name": "aiss", "rate": 0.7}],
        "sites": [
            {
                "name": "cyberport",
                "backends": ["ray", "kubernetes"],
                "subsidy_programs": ["aiss"],
                "gpu_prices_hkd_per_hour": {"H800": 38},
                "agent_token_sha256": sha256_hex("a1"),
            },
            {
                "name": "sandy-ridge",
                "backends": ["kubernetes"],
                "gpu_prices_hkd_per_hour": {"H800": 32},
                "agent_token_sha256": sha256_hex("a2"),
            },
        ],
        "tenants": [
            {"name": TENANT, "token_sha256": sha256_hex("t1")},
            {"name": OTHER, "token_sha256": sha256_hex("t2")},
        ],
        "operators": [{"name": "sre", "token_sha256": sha256_hex("o1")}],
    }
    data.update(changes)
    return parse_federation(data)


def subsidised_federation() -> FederationConfig:
    data = federation().model_dump()
    data["tenants"][0]["subsidy"] = {"program": "aiss", "budget_hkd": 1000.0}
    data["sites"][0]["gpu_prices_hkd_per_hour"] = {"H800": 40.0}
    return parse_federation(data)


def spec(**changes: Any) -> WorkloadSpec:
    data: dict[str, Any] = {
        "name": "train",
        "backend": "ray",
        "ray": {"entrypoint": "python train.py"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
        "max_attempts": 2,
    }
    data.update(changes)
    return parse_spec(data)


@dataclass
class Clock:
    wall_now: float = 1_000_000.0
    mono_now: float = 0.0

    def wall(self) -> float:
        return self.wall_now

    def monotonic(self) -> float:
        return self.mono_now


def nodes(count: int = 2, allocated: int = 0) -> tuple[Node, ...]:
    return tuple(Node(f"n{i}", "H800", 8, allocated if i == 0 else 0) for i in range(count))


def inventory(
    count: int = 2, allocated: int = 0, attempts: tuple[tuple[str, int, str], ...] = ()
) -> c.Inventory:
    return c.Inventory(nodes(count, allocated), (), tuple(c.AttemptReport(w, a, s) for w, a, s in attempts))


@dataclass
class Harness:
    engine: Engine
    clock: Clock
    sessions: dict[str, AgentSession] = field(default_factory=dict)
    seq: int = 0

    @classmethod
    async def start(cls, config: FederationConfig, db_url: str, clock: Clock | None = None) -> Harness:
        clock = clock or Clock()
        engine = Engine(config, Store(db_url), wall=clock.wall, monotonic=clock.monotonic)
        await engine.start(tick=False)
        return cls(engine, clock)

    async def stop(self) -> None:
        await self.engine.stop()
        self.engine.store.close()

    async def settle(self) -> None:
        """Every command posted so far has been through a committed cycle."""
        await self.engine.call(c.Tick())

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass, in the engine's tick steps, sweeping as the engine's timer would."""
        step = self.engine.tick_interval
        passed = 0.0
        while passed < seconds:
            delta = min(step, seconds - passed)
            self.clock.mono_now += delta
            self.clock.wall_now += delta
            self.engine.clock.tick()
            passed += delta
            await self.settle()

    async def connect(self, site: str = "cyberport", agent_id: str | None = None, **report: Any) -> None:
        self.sessions[site] = await self.engine.call(c.Hello(site, agent_id or f"{site}-agent"))
        await self.report(site, **report)

    async def report(self, site: str = "cyberport", **kwargs: Any) -> None:
        self.seq += 1
        session = self.sessions[site]
        self.engine.heard(session)
        self.engine.post(c.Report(session, self.seq, inventory(**kwargs)))
        await self.settle()

    async def update(
        self,
        workload_id: str,
        attempt: int,
        state: str,
        site: str = "cyberport",
        message: str = "",
        reason: str = "",
    ) -> None:
        session = self.sessions[site]
        self.engine.heard(session)
        report = c.AttemptReport(workload_id, attempt, state, message, reason=reason)
        self.engine.post(c.Update(session, report))
        await self.settle()

    async def ack(self, workload_id: str, attempt: int, site: str = "cyberport") -> None:
        self.engine.post(c.Ack(self.sessions[site], workload_id, attempt))
        await self.settle()

    async def submit(self, tenant: str = TENANT, **changes: Any) -> WorkloadRecord:
        workload = spec(**changes)
        record, _ = await self.engine.submit(tenant, workload, spec_to_proto(workload).SerializeToString())
        return record

    async def get(self, workload_id: str) -> WorkloadRecord:
        return await self.engine.get(workload_id, None)

    def sent(self, site: str = "cyberport") -> list[ToAgent]:
        outbox = self.sessions[site].outbox
        out = []
        while not outbox.empty():
            message = outbox.get_nowait()
            if message is not None:
                out.append(message)
        return out

    def assignments(self, site: str = "cyberport") -> list[tuple[str, int]]:
        return [(m.workload_id, m.attempt) for m in self.sent(site) if isinstance(m, Assign)]

    def cancels(self, site: str = "cyberport") -> list[tuple[str, int]]:
        return [(m.workload_id, m.attempt) for m in self.sent(site) if isinstance(m, CancelAttempt)]
