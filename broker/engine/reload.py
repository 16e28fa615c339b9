"""Live config reload: a new federation file checked against the running broker, and what changed.

The engine swaps the config between cycles (a `Reload` command through its queue): the
cycle that takes it commits what came before, then the engine rebuilds its memory from the
database under the new config, as after a restart. So budgets, rates, prices, quotas,
weights, tokens and tenants change at once, while every reservation keeps the price and rate
it was placed at (its ledger row). A file that fails validation, or that would strand running
work (a site removed while work runs there), changes nothing and says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from broker.config import FederationConfig
from broker.lifecycle import ACTIVE


@dataclass(frozen=True)
class ReloadResult:
    reloaded: bool
    path: str
    problems: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)


def blockers(new: FederationConfig, live: Iterable[Any]) -> list[str]:
    """Why `new` cannot replace the running config: it drops a site that still has work."""
    sites = {s.name for s in new.sites}
    busy = sorted({w.site for w in live if w.state in ACTIVE and w.site is not None and w.site not in sites})
    return [f"sites: {name} is removed but still has placed or running work; drain it first" for name in busy]


def changes(old: FederationConfig, new: FederationConfig) -> list[str]:
    """One line per changed part: top-level settings, and sites, tenants, programs by name."""
    out: list[str] = []
    before, after = old.model_dump(mode="json"), new.model_dump(mode="json")
    for key in after:
        if before.get(key) == after[key]:
            continue
        if isinstance(after[key], list) and all(isinstance(x, dict) and "name" in x for x in after[key]):
            out.extend(_by_name(key, before.get(key) or [], after[key]))
        else:
            out.append(f"{key} changed")
    return out


def _by_name(key: str, before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    old = {x["name"]: x for x in before}
    new = {x["name"]: x for x in after}
    out = [f"{key}: {name} added" for name in new if name not in old]
    out += [f"{key}: {name} removed" for name in old if name not in new]
    for name in new:
        if name in old and old[name] != new[name]:
            fields = sorted(
                k for k in new[name].keys() | old[name].keys() if old[name].get(k) != new[name].get(k)
            )
            out.append(f"{key}: {name}: {', '.join(fields)} changed")
    return out
