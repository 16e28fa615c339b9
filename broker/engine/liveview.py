"""What the engine knows now about stored workloads, for Get, List and Explain.

The database holds what was decided; some of what a user needs is only in the engine's
memory: where a queued workload stands in the queue and what it waits for now, and
whether the site running a workload still answers (and when the work goes back to the
queue if it does not). These functions read that memory on the engine's event loop;
they change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from broker.config import FederationConfig
from broker.engine.links import SiteLink
from broker.engine.records import WorkloadRecord
from broker.errors import InvalidArgument, NotFound
from broker.lifecycle import ACTIVE, CANCELLED, FAILED, PLACED, QUEUED, SUCCEEDED, TERMINAL
from broker.placement import PlacementCore


@dataclass(frozen=True, slots=True)
class LiveStatus:
    queue_position: int = 0  # 1-based while queued, 0 otherwise
    waiting_for: str | None = None  # a queued workload's reason now
    site_unreachable_since: float | None = None  # wall clock: the site's last message
    requeue_at: float | None = None  # wall clock: when its work goes back to the queue


@dataclass(frozen=True, slots=True)
class Clocks:
    """The engine's attentive clock and the wall clock, read at one moment (to convert)."""

    now: float
    wall: float

    def to_wall(self, attentive: float) -> float:
        return self.wall - (self.now - attentive)


class QueuePositions:
    """Each queued workload's place in the queue, as the next pass would take it.

    Working the order out walks the whole queue in fair order, O(queue): once per Get made a
    flood of queued work slow every other tenant's Get (bench/flood.py), and so did once per
    change of the queue, which a flood changes with every accepted submit. So a place shown
    is at most `max_age_s` old; work asked about that joined since is placed at once."""

    def __init__(self, max_age_s: float = 1.0) -> None:
        self.max_age_s = max_age_s
        self._core: int | None = None
        self._at = 0.0
        self._positions: dict[str, int] = {}

    def of(self, core: PlacementCore, now: float, wanted: Iterable[str] = ()) -> dict[str, int]:
        fresh = id(core) == self._core and 0 <= now - self._at <= self.max_age_s
        if not fresh or any(w not in self._positions for w in wanted):
            self._positions = {wid: i for i, wid in enumerate(core.queued_ids(), start=1)}
            self._core, self._at = id(core), now
        return self._positions


def statuses(
    core: PlacementCore,
    links: dict[str, SiteLink],
    config: FederationConfig,
    clocks: Clocks,
    records: Iterable[WorkloadRecord],
    positions_cache: QueuePositions,
) -> dict[str, LiveStatus]:
    records = list(records)
    queued = [r.id for r in records if r.state == QUEUED]
    positions: dict[str, int] = {}
    if queued:
        positions = positions_cache.of(core, clocks.now, queued)
    out: dict[str, LiveStatus] = {}
    for record in records:
        if record.state == QUEUED and record.id in positions:
            explanation = core.explain(record.id)
            reason = explanation.summary if explanation is not None else None
            out[record.id] = LiveStatus(queue_position=positions[record.id], waiting_for=reason)
        elif record.state in ACTIVE and record.site in links:
            unreachable = _unreachable(links[record.site], record, config, clocks)
            if unreachable is not None:
                out[record.id] = unreachable
    return out


def _unreachable(
    link: SiteLink, record: WorkloadRecord, config: FederationConfig, clocks: Clocks
) -> LiveStatus | None:
    silent_for = clocks.now - link.heard_at
    if link.unhealthy_since is None and silent_for <= config.heartbeat_ttl_s:
        return None
    since = clocks.to_wall(link.heard_at)
    if record.state == PLACED and not record.acked:
        requeue_at = clocks.wall  # never taken: requeued at the next health check
    else:
        stranded = link.unhealthy_since
        if stranded is None:
            stranded = link.heard_at + config.heartbeat_ttl_s
        requeue_at = clocks.to_wall(stranded) + config.requeue_grace_s
    return LiveStatus(site_unreachable_since=since, requeue_at=requeue_at)


def iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def unreachable_text(site: str | None, status: LiveStatus) -> str:
    assert status.site_unreachable_since is not None and status.requeue_at is not None
    return (
        f"site {site} unreachable since {iso(status.site_unreachable_since)}; "
        f"requeued at {iso(status.requeue_at)} unless it returns"
    )


def finished_summary(record: WorkloadRecord, decision: dict[str, Any]) -> str:
    """A finished workload's explanation says that it finished, how, and where (past tense)."""
    attempts = f"{record.attempt} attempt{'s' if record.attempt != 1 else ''}"
    where = f" on {record.site}" if record.site else ""
    message = f": {record.message}" if record.message else ""
    if record.state == SUCCEEDED:
        return f"finished: SUCCEEDED{where} after {attempts}{message}"
    if record.state == FAILED:
        return f"finished: FAILED after {attempts}{message}"
    if record.state == CANCELLED:
        if record.site is None:
            before = decision.get("summary", "")
            waited = f" (it was {before})" if before.startswith("waiting") else ""
            return f"finished: CANCELLED while queued{message}{waited}"
        return f"finished: CANCELLED{where} (attempt {record.attempt}){message}"
    return decision.get("summary", "")


def explained_now(
    decision: dict[str, Any], record: WorkloadRecord, status: LiveStatus | None
) -> dict[str, Any]:
    """The stored decision, its summary brought up to now: finished, or its site unreachable."""
    if record.state in TERMINAL:
        return {**decision, "summary": finished_summary(record, decision)}
    if status is not None and status.site_unreachable_since is not None:
        return {
            **decision,
            "summary": f"{decision.get('summary', '')}; {unreachable_text(record.site, status)}",
        }
    return decision


def one_match(ref: str, matches: list[WorkloadRecord]) -> WorkloadRecord:
    """The workload `ref` names, or why it names none (NotFound) or several (InvalidArgument)."""
    if not matches:
        raise NotFound(f"no workload {ref!r}")
    if len(matches) > 1:
        shown = ", ".join(f"{m.id} ({m.name}, {m.tenant})" for m in matches[:5])
        raise InvalidArgument(f"{ref!r} matches more than one workload: {shown}; use more of the id")
    return matches[0]
