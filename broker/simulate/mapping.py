"""The mapping file: how a trace meets a federation config.

Public traces have no tenants, datasets, subsidy or GPU models, and ``federation.yaml`` has
no inventory (agents report it). The mapping supplies both, in one small YAML file:

```yaml
gpu_model: H800          # what every job asks for (the traces name none)
backend: kubernetes
gpus_per_node: 8         # gang split when the trace has no gpus_per_node
start_s: 0               # replay from here; earlier jobs arrive here with the rest of their run
sites:                   # inventory per site, as a simulated agent would report it
  cyberport: [{count: 112, gpu_model: H800, gpus: 8}]
tenants:                 # every tenant named below must be in federation.yaml
  lion-rock-ai:
    home: cyberport      # where it runs without federation (the home-site baseline)
    subsidy_share: 0.9   # share of its jobs that ask for subsidy, drawn per job from the seed
    datasets: {cantonese-speech: 0.5}   # chance that a job reads it, drawn per job
    priorities: {1: 0.05}                # chance of each priority (else 0), drawn per job
clusters:                # the trace's cluster column -> tenant, or tenant -> share of jobs
  cluster04: lion-rock-ai
  openb: {lion-rock-ai: 0.6, harbour-robotics: 0.4}
```

Errors are ``InvalidInput`` naming the field path, like the federation config's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from broker.config import FederationConfig
from broker.validation import InvalidInput, describe, read_yaml

from .trace import TraceJob

Share = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeGroup(_Strict):
    count: Annotated[int, Field(gt=0)]
    gpu_model: Annotated[str, Field(min_length=1)]
    gpus: Annotated[int, Field(gt=0)]
    cpus: Annotated[float, Field(ge=0)] = 0.0
    memory_gb: Annotated[float, Field(ge=0)] = 0.0


class TenantMapping(_Strict):
    home: str
    subsidy_share: Share = 1.0
    datasets: dict[str, Share] = {}
    # priority -> chance that a job has it (the rest: priority 0). Traces carry no priorities;
    # this gives some jobs one, so the federation's priority classes (preemption) have work.
    priorities: dict[int, Share] = {}


class Mapping(_Strict):
    gpu_model: Annotated[str, Field(min_length=1)] = "H800"
    backend: Literal["kubernetes", "ray"] = "kubernetes"
    gpus_per_node: Annotated[int, Field(gt=0)] = 8
    start_s: Annotated[float, Field(ge=0)] = 0.0
    sites: dict[str, list[NodeGroup]]
    tenants: dict[str, TenantMapping]
    clusters: dict[str, str | dict[str, Annotated[float, Field(gt=0)]]]

    def tenant_shares(self, cluster: str) -> list[tuple[str, float]]:
        """(tenant, share) for a trace cluster, in name order; [] if unmapped."""
        target = self.clusters.get(cluster)
        if target is None:
            return []
        if isinstance(target, str):
            return [(target, 1.0)]
        return sorted(target.items())


def load_mapping(path: str | Path, config: FederationConfig) -> Mapping:
    path = Path(path)
    return parse_mapping(read_yaml(path), config, str(path))


def parse_mapping(data: object, config: FederationConfig, source: str = "mapping") -> Mapping:
    try:
        mapping = Mapping.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(source, describe(error)) from None
    problems = check_mapping(mapping, config)
    if problems:
        raise InvalidInput(source, problems)
    return mapping


def check_mapping(mapping: Mapping, config: FederationConfig) -> list[str]:
    """Names the mapping uses that the federation does not know, as 'field: problem'."""
    sites = {s.name for s in config.sites}
    tenants = {t.name for t in config.tenants}
    datasets = {d.name for d in config.datasets}
    problems = [f"sites.{name}: unknown site {name!r}" for name in mapping.sites if name not in sites]
    if not any(mapping.gpu_model in s.gpu_prices_hkd_per_hour for s in config.sites):
        problems.append(f"gpu_model: no site prices {mapping.gpu_model!r}, so every job would be refused")
    for name, tmap in mapping.tenants.items():
        if name not in tenants:
            problems.append(f"tenants.{name}: not a tenant of the federation")
        if tmap.home not in sites:
            problems.append(f"tenants.{name}.home: unknown site {tmap.home!r}")
        problems += [
            f"tenants.{name}.datasets.{d}: unknown dataset {d!r}" for d in tmap.datasets if d not in datasets
        ]
        if sum(tmap.priorities.values()) > 1 + 1e-9:
            problems.append(f"tenants.{name}.priorities: the chances add up to more than 1")
    for cluster in mapping.clusters:
        for tenant, _ in mapping.tenant_shares(cluster):
            if tenant not in mapping.tenants:
                problems.append(f"clusters.{cluster}: tenant {tenant!r} is not under tenants")
    return problems


def default_mapping(config: FederationConfig, jobs: Sequence[TraceJob]) -> Mapping:
    """The mapping used without ``--mapping``: a plain, documented starting point.

    - GPU model: the first one priced at the first site; 8-GPU nodes.
    - Sites: every site pricing that model gets an equal share of nodes, sized so that the
      trace's mean offered load (whole GPUs x seconds over its span) fills 80% of them.
    - Tenants: the federation's tenants in name order, one per trace cluster in turn (the
      cluster's own name when the federation has none); home = the first site in the
      config that honours the tenant's subsidy program, else the first site.
    """
    model = next(iter(config.sites[0].gpu_prices_hkd_per_hour), "H800")
    priced = [s.name for s in config.sites if model in s.gpu_prices_hkd_per_hour] or [config.sites[0].name]
    span = max((j.submit_s + j.duration_s for j in jobs), default=1.0) - min(
        (j.submit_s for j in jobs), default=0.0
    )
    load = sum(math.ceil(j.gpus) * j.duration_s for j in jobs) / max(span, 1.0)
    per_site = max(1, math.ceil(load / 0.8 / 8 / len(priced)))
    clusters = sorted({j.cluster for j in jobs})
    names = sorted(t.name for t in config.tenants)
    programs = {t.name: t.subsidy.program for t in config.tenants if t.subsidy}
    tenants: dict[str, TenantMapping] = {}
    cluster_map: dict[str, str | dict[str, float]] = {}
    for i, cluster in enumerate(clusters):
        tenant = names[i % len(names)] if names else cluster
        program = programs.get(tenant)
        home = next((s.name for s in config.sites if program in s.subsidy_programs), config.sites[0].name)
        tenants[tenant] = TenantMapping(home=home)
        cluster_map[cluster] = tenant
    return Mapping(
        gpu_model=model,
        sites={name: [NodeGroup(count=per_site, gpu_model=model, gpus=8)] for name in priced},
        tenants=tenants,
        clusters=cluster_map,
    )
