"""Broken invariants of the placement core: the one exception tree it raises.

"Does not fit" is never an exception: it is data (``Queued`` / ``Refused`` with an
explanation). These exceptions mean a caller broke the contract or the core found its
own state inconsistent; the broker maps them to gRPC status codes at the API boundary.

    PlacementError                 base, carries the workload and site it concerns
    ├── InvalidRequest             a request that no placement could mean (replicas < 1, ...)
    ├── UnknownSite                a site that is not in the federation config
    ├── DuplicateWorkload          submit/restore of an id the core already holds
    └── InvariantViolation         the core's own bookkeeping went wrong (a bug)
"""

from __future__ import annotations


class PlacementError(Exception):
    """Base of the placement core's errors."""

    def __init__(self, message: str, *, workload: str | None = None, site: str | None = None):
        super().__init__(message)
        self.workload = workload
        self.site = site


class InvalidRequest(PlacementError):
    """The request is malformed (the API layer should have rejected it)."""


class UnknownSite(PlacementError):
    """A site name that the federation config does not define."""


class DuplicateWorkload(PlacementError):
    """The workload id is already queued or placed in this core."""


class InvariantViolation(PlacementError):
    """The core's own accounting is inconsistent: a bug, never a placement outcome."""
