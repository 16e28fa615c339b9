"""Idempotent submit: which workload each recent (tenant, request id) made, in memory.

A client sets `SubmitRequest.request_id` and retries with the same id when the answer is lost
(UNAVAILABLE: a broker killed after its commit, a network cut). The engine answers such a
repeat with the workload the first submit made, from this map, so a new submit never costs a
database read. The map holds the newest `MAX_REMEMBERED` ids (a retry comes within seconds or
minutes; a broker restart rebuilds the map from the workloads table) plus every unfinished
workload's. The database's unique index on (tenant, request_id) is the backstop for an id older
than that: its insert fails, the cycle is rebuilt with that id read back (`Engine._recover`),
and the client's retry is then answered from here.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker.errors import InvalidArgument
from broker.spec import WorkloadSpec

# ~300 bytes each with its strings (measured: 30 MB for 100,000 UUIDs and workload ids).
MAX_REMEMBERED = 100_000
MAX_REQUEST_ID_CHARS = 128


class RecentRequests:
    """(tenant, request id) -> workload id, the newest `limit` of them (insertion order)."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self.limit = limit
        self._ids: OrderedDict[tuple[str, str], str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def get(self, tenant: str, request_id: str) -> str | None:
        return self._ids.get((tenant, request_id))

    def remember(self, tenant: str, request_id: str, workload_id: str) -> None:
        self._ids[(tenant, request_id)] = workload_id
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)  # the oldest: its retries are long over

    def load(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """(tenant, request id, workload id) rows, oldest first (a rebuild from the database)."""
        for tenant, request_id, workload_id in rows:
            self.remember(tenant, request_id, workload_id)


@dataclass(frozen=True, slots=True)
class Repeat:
    """A submit's answer when its request id made a workload that has ended since (it lives only
    in the database now): the engine reads it there, off the hot path."""

    workload_id: str


def repeat_explanation(workload_id: str, site: str | None, state: str, request_id: str) -> dict[str, Any]:
    """What a repeated submit is told besides its workload: that it is one (no new decision)."""
    return {
        "workload": workload_id,
        "chosen": site,
        "candidates": [],
        "summary": f"already submitted with request id {request_id!r}: {workload_id}, {state}",
        "repeat": True,
    }


def check_same_spec(workload_id: str, stored: dict[str, Any], spec: WorkloadSpec, request_id: str) -> None:
    """A request id names one submit: reused with another workload spec, it is the client's bug
    (two workloads under one id), refused rather than silently answered with the first."""
    if stored != spec.model_dump(mode="json"):
        raise InvalidArgument(
            f"request_id: {request_id!r} was used for workload {workload_id} with another spec; "
            "use a new request id for a new workload"
        )


_REQUEST_ID = re.compile(r"[\x21-\x7e]+")  # visible ASCII: a UUID, a ULID, a client's own key


def checked_request_id(value: str) -> str | None:
    """The request id of a SubmitRequest, or None when none was given; never echoed back."""
    if not value:
        return None
    if len(value) > MAX_REQUEST_ID_CHARS:
        raise InvalidArgument(
            f"request_id: {len(value):,} characters; at most {MAX_REQUEST_ID_CHARS} are accepted"
        )
    if not _REQUEST_ID.fullmatch(value):
        raise InvalidArgument("request_id: only visible ASCII characters (a UUID, say) are accepted")
    return value
