"""Why an attempt failed, as a bounded metric label.

Read from the event's structured `Event.reason`, never from its words: the site's agent
says why an attempt ended (one of the agent's `Reason` values, see
site_agents/backends/base.py), and the broker gives its own reason where it ended one
itself (broker/engine/state.py): `preempted`, and `site_unavailable` (a silent site) or
`forgotten_by_agent` (a restarted agent that forgot an attempt), named in
broker/engine/infra.py. Each maps to one of `REASONS`; a word that is not a known reason
reads ``other``, so a misbehaving agent cannot grow the label set; no reason at all reads
``unspecified`` (an agent that said FAILED without one).
"""

from __future__ import annotations

import re

from broker.engine import infra

# The agent's reasons for an attempt that ended without success (Reason minus none/cancelled).
AGENT_REASONS = ("exit", "oom", "launch_error", "image_pull", "no_capacity", "lost")
PREEMPTED = "preempted"  # the broker made room for higher-priority work (its own `Event.reason`)
SITE_UNAVAILABLE = infra.SITE_UNAVAILABLE  # the site went silent past the TTL (and grace)
FORGOTTEN = infra.FORGOTTEN  # a restarted agent no longer knows an attempt it had taken
QUARANTINED = "quarantined"  # a stored workload that could not be restored at recovery
UNSPECIFIED = "unspecified"  # the agent said FAILED without a reason
OTHER = "other"
REASONS = (*AGENT_REASONS, PREEMPTED, SITE_UNAVAILABLE, FORGOTTEN, QUARANTINED, UNSPECIFIED, OTHER)
_KNOWN = frozenset((*AGENT_REASONS, PREEMPTED, SITE_UNAVAILABLE, FORGOTTEN))
# Recovery marks a workload it cannot restore FAILED in words only (broker/engine/recovery.py).
_QUARANTINE = re.compile(r"^quarantined at recovery")


def failure_reason(reason: str, message: str = "") -> str:
    """The label of a failed attempt, from its event's `reason`."""
    if reason:
        return reason if reason in _KNOWN else OTHER
    return QUARANTINED if _QUARANTINE.match(message) else UNSPECIFIED
