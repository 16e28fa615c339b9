"""The tables. Times are UNIX seconds (float) so SQLite and PostgreSQL agree exactly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, Index, Numeric, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlmodel import Field, SQLModel

# JSONB on PostgreSQL (stored parsed), JSON text on SQLite. A change to any table here needs a
# migration (broker/store/migrations, README "Database and upgrades"); a test fails without one.
JSON_DOCUMENT = JSON().with_variant(JSONB(), "postgresql")


class Money(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC(20, 8) on PostgreSQL; on SQLite, whose NUMERIC is a float
    underneath, the decimal's text (sums are made in Python there: broker/ledger.py)."""

    impl = Numeric(20, 8)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(Numeric(20, 8, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value)
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


class WorkloadRow(SQLModel, table=True):
    __tablename__ = "workloads"
    # a site's work by state and acknowledgement (List --site, what a site was sent)
    __table_args__ = (
        Index("ix_workloads_site_state_acked", "site", "state", "acked"),
        # A submit's request id names one workload per tenant (a retried submit finds it; NULL: none
        # given). A unique index rather than a constraint: SQLite adds it without copying the table.
        Index("ux_workloads_tenant_request_id", "tenant", "request_id", unique=True),
    )

    # seq orders submissions (older = smaller; the engine assigns it); id is what users see.
    seq: int | None = Field(default=None, primary_key=True, sa_column_kwargs={"autoincrement": False})
    id: str = Field(index=True, unique=True)
    name: str = Field(index=True)  # a workload named on the command line
    tenant: str = Field(index=True)
    backend: str
    spec: dict[str, Any] = Field(sa_column=Column(JSON_DOCUMENT, nullable=False))
    state: str = Field(index=True)
    site: str | None = None
    nodes: list[str] = Field(default_factory=list, sa_column=Column(JSON_DOCUMENT, nullable=False))
    attempt: int = 0
    acked: bool = False  # the site's agent has taken the current attempt's assignment
    trace_id: str = ""
    traceparent: str = ""  # W3C context of the current attempt, parent of its spans
    message: str = ""
    created_at: float
    updated_at: float
    started_at: float | None = None  # when the current attempt was reported RUNNING
    # Why the last attempt ended and the requeues that used no attempt (broker/engine/infra.py);
    # retry_at: a free requeue is not placed before it, also after a restart.
    reason: str = ""
    infra_requeues: int = 0
    doubt_requeues: int = 0
    retry_at: float | None = None
    preemptions: int = 0  # requeues for higher-priority work (broker/placement/preemption.py)
    request_id: str | None = None  # the client's id for its submit (SubmitRequest.request_id)


class WorkloadEventRow(SQLModel, table=True):
    __tablename__ = "workload_events"
    # a workload's events after a point (Watch, recovery)
    __table_args__ = (Index("ix_workload_events_workload_id_seq", "workload_id", "seq"),)

    # assigned by the engine, in commit order: a Watch resumes after the last seq it saw
    seq: int | None = Field(default=None, primary_key=True, sa_column_kwargs={"autoincrement": False})
    workload_id: str
    state: str
    site: str | None = None
    attempt: int = 0
    message: str = ""
    at: float
    reason: str = ""  # why the attempt ended, on the event that ends one


class DecisionRow(SQLModel, table=True):
    """Every placement decision with its full explanation (placed, queued or refused)."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_workload_id_seq", "workload_id", "seq"),)  # the latest decision

    seq: int | None = Field(default=None, primary_key=True)
    workload_id: str
    attempt: int = 0
    chosen: str | None = None
    explanation: dict[str, Any] = Field(sa_column=Column(JSON_DOCUMENT, nullable=False))
    at: float


class SiteRow(SQLModel, table=True):
    """The last inventory each site's agent reported, so `sites` and placement have it after a restart."""

    __tablename__ = "sites"

    name: str = Field(primary_key=True)
    nodes: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON_DOCUMENT, nullable=False))
    datasets: list[str] = Field(default_factory=list, sa_column=Column(JSON_DOCUMENT, nullable=False))
    # The workloads this snapshot shows running: their GPUs are in the nodes' gpus_allocated,
    # so after a restart they are not reserved a second time.
    running: list[str] = Field(default_factory=list, sa_column=Column(JSON_DOCUMENT, nullable=False))


class SiteHeardRow(SQLModel, table=True):
    """When each site was last heard from (wall time), stored every few seconds while it runs
    work: a lost attempt is billed until then, also by a broker that restarted after it."""

    __tablename__ = "site_heard"

    name: str = Field(primary_key=True)
    at: float


class SettingRow(SQLModel, table=True):
    """Operator switches that must survive a restart (placement paused)."""

    __tablename__ = "settings"

    name: str = Field(primary_key=True)
    value: str = ""


class ChargeRow(SQLModel, table=True):
    """Before revision 0003: one settled attempt in floats. Copied into `ledger` by that
    revision and no longer written; kept so nothing stored is lost."""

    __tablename__ = "charges"
    __table_args__ = (UniqueConstraint("workload_id", "attempt"),)  # never charged twice

    seq: int | None = Field(default=None, primary_key=True)
    workload_id: str = Field(index=True)
    attempt: int
    tenant: str = Field(index=True)
    program: str | None = None
    site: str
    gpu_model: str
    gpus: int
    hours: float
    price_hkd_per_gpu_hour: float
    cost_hkd: float
    program_hkd: float
    tenant_hkd: float
    at: float


class LedgerRow(SQLModel, table=True):
    """The subsidy ledger (broker/ledger.py): every reservation, settlement and release of an
    attempt's money, exact decimals, never updated. `held_*` is the change to what is held
    against the tenant's budget (and its spend cap): + on a reservation, - on the settlement or
    release that closes it; budgets are sums of these rows."""

    __tablename__ = "ledger"
    __table_args__ = (
        UniqueConstraint("workload_id", "attempt", "kind"),  # one reservation per attempt
        UniqueConstraint("workload_id", "attempt", "closes"),  # settled or released once
        Index("ix_ledger_tenant_at", "tenant", "at"),
    )

    seq: int | None = Field(default=None, primary_key=True)
    kind: str  # reserve | settle | release
    closes: int | None = None  # 1 on settle and release (a unique key: one per attempt), else NULL
    workload_id: str = Field(index=True)
    attempt: int
    tenant: str
    program: str | None = None  # None: not subsidised
    site: str
    gpu_model: str
    gpus: int
    gpu_hours: Decimal = Field(sa_column=Column(Money(), nullable=False))  # estimated / run
    price_hkd_per_gpu_hour: Decimal = Field(sa_column=Column(Money(), nullable=False))  # as placed
    rate: Decimal = Field(sa_column=Column(Money(), nullable=False))  # the program's share, 0..1
    total_hkd: Decimal = Field(sa_column=Column(Money(), nullable=False))
    program_hkd: Decimal = Field(sa_column=Column(Money(), nullable=False))
    tenant_hkd: Decimal = Field(sa_column=Column(Money(), nullable=False))
    held_program_hkd: Decimal = Field(sa_column=Column(Money(), nullable=False))
    held_tenant_hkd: Decimal = Field(sa_column=Column(Money(), nullable=False))
    at: float
    reason: str = ""


class LeaseRow(SQLModel, table=True):
    """Who schedules (broker/store/lease.py): one row; each takeover raises the epoch."""

    __tablename__ = "broker_lease"

    name: str = Field(primary_key=True)
    holder: str = ""  # the active broker's id; empty once released
    address: str = ""  # where the holder serves, to point standbys' callers at it
    epoch: int = 0
    expires_at: float = 0.0  # the database's clock, UNIX seconds
