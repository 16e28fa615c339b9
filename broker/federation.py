"""Translate the federation config and workload specs into the placement core's values."""

from __future__ import annotations

from broker import placement
from broker.config import FederationConfig
from broker.spec import WorkloadSpec
from broker.validation import did_you_mean


def placement_federation(
    config: FederationConfig, spent_hkd: dict[str, float] | None = None
) -> placement.Federation:
    """The core's view of the config; budgets are what is left after ``spent_hkd`` per tenant."""
    spent = spent_hkd or {}
    return placement.Federation(
        sites=tuple(
            placement.SiteConfig(
                name=site.name,
                backends=frozenset(site.backends),
                subsidy_programs=frozenset(site.subsidy_programs),
                gpu_prices_hkd_per_hour=dict(site.gpu_prices_hkd_per_hour),
            )
            for site in config.sites
        ),
        programs=tuple(placement.SubsidyProgram(p.name, p.rate) for p in config.subsidy_programs),
        tenants=tuple(
            placement.TenantPolicy(
                name=t.name,
                subsidy_program=t.subsidy.program if t.subsidy else None,
                budget_hkd=max(0.0, t.subsidy.budget_hkd - spent.get(t.name, 0.0)) if t.subsidy else 0.0,
                quota_gpus=t.quota_gpus,
                home_site=t.home_site,
                fair_share_weight=t.fair_share_weight,
                max_hkd_per_month=t.max_hkd_per_month,
            )
            for t in config.tenants
        ),
        datasets=tuple(placement.Dataset(d.name, d.size_gb, frozenset(d.replicas)) for d in config.datasets),
        links_gbit_s={frozenset(link.sites): link.gbit_s for link in config.links},
        weights=placement.Weights(
            locality=config.weights.locality, cost=config.weights.cost, load=config.weights.load
        ),
        overflow_after_s=config.overflow_after_s,
        fair_share=placement.FairSharePolicy(
            enabled=config.fair_share.enabled, half_life_s=config.fair_share.half_life_h * 3600
        ),
        preempting_priorities=frozenset(c.priority for c in config.priority_classes if c.preempt),
    )


def placement_request(
    workload_id: str, tenant: str, spec: WorkloadSpec, seq: int, submitted_at: float = 0.0
) -> placement.Request:
    r = spec.resources
    return placement.Request(
        workload_id=workload_id,
        tenant=tenant,
        backend=spec.backend,
        gpu_model=r.gpu_model,
        gpus_per_replica=r.gpus_per_replica,
        replicas=r.replicas,
        cpus_per_replica=r.cpus_per_replica,
        memory_gb_per_replica=r.memory_gb_per_replica,
        datasets=tuple(spec.datasets),
        subsidy=spec.subsidy,
        priority=spec.priority,
        estimated_hours=spec.estimated_hours,
        sites=tuple(spec.sites),
        seq=seq,
        prefer=tuple(spec.prefer),
        overflow_after_s=spec.overflow_after_s,
        submitted_at=submitted_at,
    )


def check_references(config: FederationConfig, spec: WorkloadSpec) -> list[str]:
    """Names in the spec that the federation does not know, as 'field: problem' lines
    with the closest known name (a typo is the likely cause)."""
    sites = [s.name for s in config.sites]
    datasets = [d.name for d in config.datasets]
    models = sorted({m for s in config.sites for m in s.gpu_prices_hkd_per_hour})
    problems = [
        f"datasets[{i}]: unknown dataset {name!r}{did_you_mean(name, datasets)}"
        for i, name in enumerate(spec.datasets)
        if name not in datasets
    ]
    problems += [
        f"sites[{i}]: unknown site {name!r}{did_you_mean(name, sites)}"
        for i, name in enumerate(spec.sites)
        if name not in sites
    ]
    problems += [
        f"prefer[{i}]: unknown site {name!r}{did_you_mean(name, sites)}"
        for i, name in enumerate(spec.prefer)
        if name not in sites
    ]
    model = spec.resources.gpu_model
    hint = did_you_mean(model, models) if model not in models else ""
    if hint:  # a typo; a real model nobody offers is refused with each site's reason instead
        problems.append(f"resources.gpu_model: no site offers {model!r}{hint}")
    return problems
