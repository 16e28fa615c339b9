"""Why an attempt failed, as a bounded metric label.

The site's agent says why an attempt ended (`Event.reason`: one of the agent's `Reason`
values, see site_agents/backends/base.py); the broker's own loss detection says it in the
event's words only (`broker/engine/state.py`: a silent site, a restarted agent that forgot
an attempt, recovery's quarantine). Each maps to one of `REASONS`; an agent's word that is
not a known reason reads ``other``, so a misbehaving agent cannot grow the label set.
"""

from __future__ import annotations

import re

# The agent's reasons for an attempt that ended without success (Reason minus none/cancelled).
AGENT_REASONS = ("exit", "oom", "launch_error", "image_pull", "no_capacity", "lost")
PREEMPTED = "preempted"  # the broker made room for higher-priority work (its own `Event.reason`)
SITE_UNAVAILABLE = "site_unavailable"  # the site went silent past the TTL (and grace)
FORGOTTEN = "forgotten_by_agent"  # a restarted agent no longer knows an attempt it had taken
QUARANTINED = "quarantined"  # a stored workload that could not be restored at recovery
UNSPECIFIED = "unspecified"  # the agent said FAILED without a reason
OTHER = "other"
REASONS = (*AGENT_REASONS, PREEMPTED, SITE_UNAVAILABLE, FORGOTTEN, QUARANTINED, UNSPECIFIED, OTHER)
_KNOWN = frozenset((*AGENT_REASONS, PREEMPTED))

_PATTERNS = (
    (re.compile(r"^attempt \d+ failed"), UNSPECIFIED),
    (re.compile(r"^attempt \d+ lost by "), FORGOTTEN),
    (re.compile(r"^site \S+ unavailable "), SITE_UNAVAILABLE),
    (re.compile(r"^quarantined at recovery"), QUARANTINED),
)


def failure_reason(reason: str, message: str) -> str:
    """The label of a failed attempt: the agent's `reason` if it gave one, else from the broker's words."""
    if reason:
        return reason if reason in _KNOWN else OTHER
    for pattern, label in _PATTERNS:
        if pattern.match(message):
            return label
    return OTHER
