"""Builders for the placement core's tests: small federations in a line each."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from broker.placement import (
    Dataset,
    Federation,
    Node,
    PlacementCore,
    Request,
    SiteConfig,
    SubsidyProgram,
    TenantPolicy,
    Weights,
)

DEFAULT_WEIGHTS = Weights()
BOTH = frozenset({"kubernetes", "ray"})


def site(
    name: str,
    *,
    backends: Iterable[str] = BOTH,
    programs: Iterable[str] = (),
    prices: Mapping[str, float] | None = None,
) -> SiteConfig:
    return SiteConfig(name, frozenset(backends), frozenset(programs), dict(prices or {"H800": 38.0}))


def federation(
    *sites: SiteConfig,
    programs: Iterable[SubsidyProgram] = (SubsidyProgram("aiss", 0.7),),
    tenants: Iterable[TenantPolicy] = (TenantPolicy("lion"),),
    datasets: Iterable[Dataset] = (),
    links: Mapping[frozenset[str], float] | None = None,
    weights: Weights = DEFAULT_WEIGHTS,
    **policy: Any,  # overflow_after_s, fair_share, preempting_priorities
) -> Federation:
    return Federation(
        sites=tuple(sites),
        programs=tuple(programs),
        tenants=tuple(tenants),
        datasets=tuple(datasets),
        links_gbit_s=dict(links or {}),
        weights=weights,
        **policy,
    )


def nodes(
    prefix: str,
    count: int,
    *,
    model: str = "H800",
    gpus: int = 8,
    allocated: int = 0,
    cpus: float = 0.0,
    memory_gb: float = 0.0,
) -> list[Node]:
    return [Node(f"{prefix}-{i}", model, gpus, allocated, cpus, memory_gb) for i in range(count)]


def core(
    fed: Federation, inventory: Mapping[str, list[Node]], *, healthy: bool = True, **kw
) -> PlacementCore:
    c = PlacementCore(fed, **kw)
    for name, ns in inventory.items():
        c.update_site(name, nodes=ns)
        c.set_healthy(name, healthy)
    return c


def req(wid: str, **kw) -> Request:
    base: dict = {
        "tenant": "lion",
        "backend": "kubernetes",
        "gpu_model": "H800",
        "gpus_per_replica": 8,
    }
    base.update(kw)
    return Request(wid, **base)


def reasons_by_site(explanation) -> dict[str, tuple[str, ...]]:
    return {c.site: c.reasons for c in explanation.candidates}
