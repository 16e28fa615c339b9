"""A scenario: federation config + trace + mapping + seed, ready to replay under policies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from broker.config import FederationConfig
from broker.federation import placement_federation
from broker.placement import DEFAULT_STARVATION_PASSES, Federation, Node

from .mapping import Mapping, default_mapping
from .policies import make_policy
from .replay import Run, inventory_nodes, replay
from .trace import Trace
from .workload import Workload, build_workload


@dataclass(frozen=True, slots=True)
class Scenario:
    federation: Federation
    inventory: dict[str, list[Node]]
    workload: Workload
    dataset_sites: dict[str, tuple[float, frozenset[str]]]  # dataset -> (GB, holders)
    mapping: Mapping
    seed: int


def build_scenario(config: FederationConfig, trace: Trace, mapping: Mapping | None, seed: int) -> Scenario:
    mapping = mapping or default_mapping(config, trace.jobs)
    groups = {
        site: [(g.count, g.gpu_model, g.gpus, g.cpus, g.memory_gb) for g in node_groups]
        for site, node_groups in mapping.sites.items()
    }
    workload = build_workload(trace.jobs, mapping, seed)
    skipped = trace.skipped + workload.skipped
    return Scenario(
        federation=placement_federation(config),
        inventory=inventory_nodes(groups),
        workload=Workload(workload.jobs, skipped),
        dataset_sites={d.name: (d.size_gb, frozenset(d.replicas)) for d in config.datasets},
        mapping=mapping,
        seed=seed,
    )


def run_policies(
    scenario: Scenario,
    names: Sequence[str],
    *,
    starvation_passes: int = DEFAULT_STARVATION_PASSES,
    on_run: Callable[[Run], None] | None = None,
) -> list[Run]:
    """One replay per policy, in the order given, each on a fresh core."""
    sites = [s.name for s in scenario.federation.sites]
    runs = []
    for name in names:
        run = replay(
            scenario.federation,
            scenario.inventory,
            scenario.workload.jobs,
            make_policy(name, sites, scenario.seed),
            dataset_sites=scenario.dataset_sites,
            starvation_passes=starvation_passes,
        )
        if on_run is not None:
            on_run(run)
        runs.append(run)
    return runs
