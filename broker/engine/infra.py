"""Why an attempt ended, and whether that uses one of the workload's attempts.

A site's agent says why each attempt ended (`reason`). Whose fault it was decides
what the broker does next:

- `no_capacity`, `lost`: the platform's. The broker placed it where the site then found
  no room (the broker's view lagged the site's), or its node, pod or job vanished under
  it. Requeued without using an attempt, as Kubernetes' podFailurePolicy ignores
  disruptions and Armada returns a lease.
- `image_pull`, `launch_error`: either's. A registry or API blip is the platform's; a
  misspelt image, a bad runtime_env or a refused spec is the user's and fails the same
  way every time. So the first `doubt_free` of them are free, later ones use attempts:
  a broken spec still ends FAILED after max_attempts instead of looping.
- `exit`, `oom`, anything else (an empty or unknown reason): the workload's. One attempt
  used, requeued at once, as before reasons existed.

A free requeue waits out a backoff before it may be placed again (`backoff_s` doubling
per free requeue, at most `backoff_max_s`: the site's next heartbeat corrects a stale
view, a flapping node gets time). Its time is stored on the workload (`retry_at`), so a
broker restart keeps it. After `limit` free requeues the workload ends FAILED (Kueue's
backoffLimitCount): an endless infrastructure loop still ends in a known state.

The broker's own loss detection (a site silent past the TTL and grace, a restarted
agent that no longer knows an attempt) still uses an attempt (broker/engine/state.py):
the broker cannot tell a dead site from a partitioned one whose work still runs. Its
events carry a reason of their own (`SITE_UNAVAILABLE`, `FORGOTTEN`), not the agent's
`lost`, whose rule here is a free requeue.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config import InfraRetry

PLATFORM = frozenset({"no_capacity", "lost"})
# The broker's own reasons, on the events of attempts it gave up on (each uses an attempt).
SITE_UNAVAILABLE = "site_unavailable"  # its site was silent past the heartbeat TTL (and the grace)
FORGOTTEN = "forgotten_by_agent"  # the site's (restarted) agent no longer knows an attempt it took
DOUBTFUL = frozenset({"image_pull", "launch_error"})
REASON_MAX_CHARS = 32  # agents' words are stored; a longer one is not one of ours anyway


@dataclass(frozen=True, slots=True)
class Verdict:
    counted: bool  # uses one of max_attempts (requeued at once, or FAILED when none are left)
    gave_up: bool = False  # a free requeue was due, but `limit` of them have been spent
    delay_s: float = 0.0  # for a free requeue: wait this long before the next placement
    doubtful: bool = False  # a free requeue spent from the `doubt_free` allowance


def judge(reason: str, infra_requeues: int, doubt_requeues: int, policy: InfraRetry) -> Verdict:
    """What a failed attempt's `reason` means, given the free requeues the workload had so far."""
    if reason in DOUBTFUL and doubt_requeues >= policy.doubt_free:
        return Verdict(counted=True)
    if reason not in PLATFORM and reason not in DOUBTFUL:
        return Verdict(counted=True)
    if infra_requeues >= policy.limit:
        return Verdict(counted=False, gave_up=True)
    return Verdict(counted=False, delay_s=backoff_s(infra_requeues + 1, policy), doubtful=reason in DOUBTFUL)


def backoff_s(nth: int, policy: InfraRetry) -> float:
    """The wait before the `nth` free requeue is placed: exponential, bounded."""
    return float(min(policy.backoff_max_s, policy.backoff_s * 2 ** min(nth - 1, 30)))
