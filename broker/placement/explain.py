"""Building explanations: every configured site as a candidate, plus a one-line summary.

The pipeline gathers reasons and terms while it decides; this module only assembles them
(Kueue's "why pending" message, Nomad's AllocMetric). Candidates come sorted by site name.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import reasons as R
from .model import Candidate, Explanation

# Failing one of these means the site is out by configuration (or, for the preference
# round, until a time the summary's round note gives), so it is never what a queued
# workload "waits for".
_STATIC = frozenset({R.BACKEND, R.ALLOWED_SITES, R.SUBSIDY_PROGRAM, R.PREFERENCE})

Failures = Sequence[tuple[str, str]]  # (filter name, reason text) in chain order


def ineligible(site: str, failures: Failures) -> Candidate:
    return Candidate(site, False, tuple(r for _, r in failures), None, None)


def _noted(summary: str, note: str | None) -> str:
    return summary if note is None else f"{summary}; {note}"


def placed(
    workload: str, chosen: Candidate, candidates: Sequence[Candidate], note: str | None = None
) -> Explanation:
    summary = _noted(R.PLACED.format(site=chosen.site, score=chosen.score or 0.0), note)
    return Explanation(workload, chosen.site, tuple(candidates), summary)


def waiting(
    workload: str, candidates: Sequence[Candidate], failures: Sequence[Failures], note: str | None = None
) -> Explanation:
    """Queued: name the most promising blocker, i.e. the first reason of the site with the
    fewest reasons among sites not ruled out by config (ties by site name); ``note`` (the
    preference round) is appended."""
    best: tuple[int, int] | None = None
    for i, fails in enumerate(failures):
        if not fails or any(name in _STATIC for name, _ in fails):
            continue
        if best is None or len(fails) < best[0]:
            best = (len(fails), i)
    if best is None:  # every site is out by config: say so for the first one
        best = (0, 0) if failures and failures[0] else None
    if best is None:
        summary = _noted(R.WAITING.format(reason=R.NO_SITES), note)
        return Explanation(workload, None, tuple(candidates), summary)
    i = best[1]
    reason = failures[i][0][1]
    everywhere = all(any(r == reason for _, r in fails) for fails in failures if fails)
    if everywhere and len(failures) > 1:
        summary = R.WAITING.format(reason=reason)
    else:
        summary = R.WAITING_AT.format(reason=reason, site=candidates[i].site)
    return Explanation(workload, None, tuple(candidates), _noted(summary, note))


def fits_next_pass(workload: str, site: str, candidates: Sequence[Candidate]) -> Explanation:
    """A queued workload that would fit now; the next queue pass will place it."""
    return Explanation(workload, None, tuple(candidates), R.WAITING_NEXT_PASS.format(site=site))


def refused(workload: str, never: Sequence[tuple[str, Sequence[str]]]) -> Explanation:
    candidates = tuple(Candidate(site, False, tuple(rs), None, None) for site, rs in never)
    details = "; ".join(f"{site}: {', '.join(rs)}" for site, rs in never)
    if not never:
        details = R.NO_SITES
    return Explanation(workload, None, candidates, R.REFUSED.format(details=details))
