"""Placement policies to compare: fedbroker itself and the baselines, as small strategies.

Every policy runs on the real ``PlacementCore``; none copies its rules. A policy can only
(a) give the core other score weights, or (b) narrow a request's allow-list before it is
submitted. So filters, gang fit, holds, refusal, the queue pass and charging are the same
for all, and only the choice of site differs:

- ``fedbroker``: the core with the federation's weights, first come first served within a
  priority (fair share off) and no site preference: the broker before issue 13.
- ``fedbroker-fairshare``: the same, with the queue ordered by tenant fair share
  (the federation's half-life and weights).
- ``fedbroker-overflow``: fair share, and each job prefers its tenant's home site for the
  federation's ``overflow_after_s`` before another site may take it.
- ``fedbroker-preemption``: fair share, home site first, and preemption: the federation's
  priority classes with ``preempt`` take back lower-priority running work (the victims
  restart from the beginning when placed again). Every other policy runs without it.
- ``home-site``: each tenant pinned to its home site (no federation).
- ``least-loaded``: the core ranking by the load term alone (weights 0/0/1), so queued work
  also goes to the least-loaded site that has room when it frees up.
- ``cheapest``: the core ranking by what the tenant pays alone (weights 0/1/0).
- ``round-robin``: at arrival, the next site in turn among those that can take it now, else
  among those that could ever take it; the job is pinned there and waits for it.
- ``random``: like round-robin, a seeded uniform choice instead of the turn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

from broker.placement import FairSharePolicy, Federation, PlacementCore, Queued, Refused, Request, Weights

from .workload import SimJob

POLICIES = (
    "fedbroker",
    "fedbroker-fairshare",
    "fedbroker-overflow",
    "fedbroker-preemption",
    "home-site",
    "round-robin",
    "least-loaded",
    "cheapest",
    "random",
)


class Policy(Protocol):
    name: str

    def weights(self, configured: Weights) -> Weights:
        """The weights the core ranks with under this policy."""
        ...

    def federation(self, configured: Federation) -> Federation:
        """The federation's queue policy under this policy (fair share, preemption)."""
        ...

    def route(self, job: SimJob, core: PlacementCore) -> Request:
        """The request to submit for this job (its allow-list possibly narrowed)."""
        ...


class Fedbroker:
    name = "fedbroker"

    def weights(self, configured: Weights) -> Weights:
        return configured

    def federation(self, configured: Federation) -> Federation:
        # The baselines all queue first come first served and never preempt, as fedbroker
        # did before issue 13.
        return _queue_policy(configured, fair_share=False, preemption=False)

    def route(self, job: SimJob, core: PlacementCore) -> Request:
        return job.request


class FairShare(Fedbroker):
    name = "fedbroker-fairshare"

    def federation(self, configured: Federation) -> Federation:
        return _queue_policy(configured, fair_share=True, preemption=False)


class Overflow(FairShare):
    name = "fedbroker-overflow"

    def route(self, job: SimJob, core: PlacementCore) -> Request:
        return replace(job.request, prefer=(job.home,))


class Preemption(Overflow):
    name = "fedbroker-preemption"

    def federation(self, configured: Federation) -> Federation:
        return _queue_policy(configured, fair_share=True, preemption=True)


def _queue_policy(configured: Federation, *, fair_share: bool, preemption: bool) -> Federation:
    """The federation with fair share on or off (the config's half-life) and its priority
    classes' preemption kept or dropped."""
    policy = FairSharePolicy(fair_share, configured.fair_share.half_life_s)
    preempting = configured.preempting_priorities if preemption else frozenset()
    return replace(configured, fair_share=policy, preempting_priorities=preempting)


class HomeSite(Fedbroker):
    name = "home-site"

    def route(self, job: SimJob, core: PlacementCore) -> Request:
        return replace(job.request, sites=(job.home,))


class LeastLoaded(Fedbroker):
    name = "least-loaded"

    def weights(self, configured: Weights) -> Weights:
        return Weights(locality=0.0, cost=0.0, load=1.0)


class Cheapest(Fedbroker):
    name = "cheapest"

    def weights(self, configured: Weights) -> Weights:
        return Weights(locality=0.0, cost=1.0, load=0.0)


class _Dispatch(Fedbroker):
    """Pick one site at arrival and pin the job there (it waits for that site)."""

    def __init__(self, sites: Sequence[str]) -> None:
        self._sites = sorted(sites)

    def route(self, job: SimJob, core: PlacementCore) -> Request:
        options = candidates(core, job.request, self._sites)
        if not options:  # can never fit anywhere: let the core refuse it
            return job.request
        return replace(job.request, sites=(self.pick(options),))

    def pick(self, options: list[str]) -> str:
        raise NotImplementedError


class RoundRobin(_Dispatch):
    name = "round-robin"

    def __init__(self, sites: Sequence[str]) -> None:
        super().__init__(sites)
        self._next = 0

    def pick(self, options: list[str]) -> str:
        n = len(self._sites)
        for k in range(n):
            i = (self._next + k) % n
            if self._sites[i] in options:
                self._next = i + 1
                return self._sites[i]
        raise AssertionError("options are configured sites")


class Random(_Dispatch):
    name = "random"

    def __init__(self, sites: Sequence[str], seed: int) -> None:
        super().__init__(sites)
        self._rng = random.Random(seed)

    def pick(self, options: list[str]) -> str:
        return self._rng.choice(options)


def candidates(core: PlacementCore, request: Request, sites: Sequence[str]) -> list[str]:
    """Sites that can take the request now (the core's eligible candidates); if none, the
    sites that could ever take it (the core does not refuse it pinned there); in name order."""
    decision = core.evaluate(request)
    if isinstance(decision, Refused):
        return []
    if not isinstance(decision, Queued):
        return [c.site for c in decision.explanation.candidates if c.eligible]
    return [s for s in sites if not isinstance(core.evaluate(replace(request, sites=(s,))), Refused)]


def make_policy(name: str, sites: Sequence[str], seed: int) -> Policy:
    if name == "fedbroker":
        return Fedbroker()
    if name == "fedbroker-fairshare":
        return FairShare()
    if name == "fedbroker-overflow":
        return Overflow()
    if name == "fedbroker-preemption":
        return Preemption()
    if name == "home-site":
        return HomeSite()
    if name == "least-loaded":
        return LeastLoaded()
    if name == "cheapest":
        return Cheapest()
    if name == "round-robin":
        return RoundRobin(sites)
    if name == "random":
        return Random(sites, seed)
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")
