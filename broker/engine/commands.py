"""What the API layer asks of the engine: plain values, no protobuf.

`api/` authenticates, authorises and converts wire messages into these; the engine
task consumes them in arrival order, a batch per scheduling cycle. Commands that
need an answer travel with a future the engine resolves after the commit that
made their effect durable (or at once, for a refusal that changes nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.placement import Node
from broker.spec import WorkloadSpec


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """One attempt as a site's agent sees it."""

    workload_id: str
    attempt: int
    state: str  # one of broker.lifecycle.STATES
    message: str = ""
    exit_code: int | None = None
    reason: str = ""  # why it ended, as the site says (broker/engine/infra.py); empty while it runs


@dataclass(frozen=True, slots=True)
class Inventory:
    """The content of a full snapshot (everything but its sequence number), validated.

    The API layer hands the engine the *same object* again when a snapshot repeats the
    last one, so the engine can tell an unchanged heartbeat by identity alone."""

    nodes: tuple[Node, ...]
    datasets: tuple[str, ...]
    attempts: tuple[AttemptReport, ...]


# ---------------------------------------------------------------------------- tenants, operators


@dataclass(frozen=True, slots=True)
class Submit:
    tenant: str
    spec: WorkloadSpec
    spec_wire: bytes  # the spec's wire form, kept for assignments (never parsed by the engine)
    request_id: str | None = None  # the client's id: a repeat gets the first one's workload


@dataclass(frozen=True, slots=True)
class Cancel:
    workload_id: str
    by: str  # who asked, for the message ("tenant lion-rock-ai")
    tenant: str | None  # a tenant may cancel only its own; None: an operator


@dataclass(frozen=True, slots=True)
class Reload:
    """Use this (validated) federation config from the end of the cycle that takes it."""

    config: object  # a broker.config.FederationConfig
    path: str
    by: str


@dataclass(frozen=True, slots=True)
class SetPaused:
    paused: bool
    by: str


# ---------------------------------------------------------------------------- agents


@dataclass(frozen=True, slots=True)
class Hello:
    site: str
    agent_id: str


@dataclass(frozen=True, slots=True)
class Report:
    session: object  # the AgentSession it came on (a replaced session's word no longer counts)
    seq: int
    inventory: Inventory


@dataclass(frozen=True, slots=True)
class Update:
    session: object
    attempt: AttemptReport


@dataclass(frozen=True, slots=True)
class Ack:
    session: object
    workload_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Gone:
    """The session's stream ended."""

    session: object


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: check heartbeats, requeue stranded work."""


Command = Submit | Cancel | SetPaused | Reload | Hello | Report | Update | Ack | Gone | Tick
