"""Why an attempt failed, as a bounded metric label, from the broker's own event texts.

The event messages come from `broker/engine/state.py` (`_retry_or_fail` and its callers,
recovery's quarantine); they hold ids and agents' words, so they are never labels
themselves. Each maps to one of `REASONS`; anything new reads ``other`` until it is added
here (a test pins the texts the rules produce today).
"""

from __future__ import annotations

import re

ATTEMPT_FAILED = "attempt_failed"  # the agent reported the attempt FAILED
LOST = "lost"  # a restarted agent no longer knows an attempt it had taken
SITE_UNAVAILABLE = "site_unavailable"  # the site went silent past the TTL (and grace)
QUARANTINED = "quarantined"  # a stored workload that could not be restored at recovery
OTHER = "other"
REASONS = (ATTEMPT_FAILED, LOST, SITE_UNAVAILABLE, QUARANTINED, OTHER)

_PATTERNS = (
    (re.compile(r"^attempt \d+ failed: "), ATTEMPT_FAILED),
    (re.compile(r"^attempt \d+ lost by "), LOST),
    (re.compile(r"^site \S+ unavailable "), SITE_UNAVAILABLE),
    (re.compile(r"^quarantined at recovery"), QUARANTINED),
)


def failure_reason(message: str) -> str:
    for pattern, reason in _PATTERNS:
        if pattern.match(message):
            return reason
    return OTHER
