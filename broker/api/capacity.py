"""An agent's inventory against what its site declared: no site reports more than it has.

`federation.yaml` bounds each site's GPUs per model (`gpu_capacity`) and every node's
(`limits.gpus_per_node`). A report beyond them is refused (`BadReport`: the agent stream
logs and drops it, and the site goes unhealthy by TTL if its reports stay so), so one
agent claiming 100,000 GPUs cannot draw the federation's work to itself.
"""

from __future__ import annotations

from collections import Counter

from broker.api.convert import BadReport
from broker.config import Limits, SiteConfig
from broker.engine.commands import Inventory


def within_capacity(inventory: Inventory, site: SiteConfig | None, limits: Limits) -> None:
    totals: Counter[str] = Counter()
    for i, node in enumerate(inventory.nodes):
        if node.gpus_allocatable > limits.gpus_per_node:
            raise BadReport(
                f"nodes[{i}].gpus_allocatable: {node.gpus_allocatable:,} GPUs on one node is above "
                f"limits.gpus_per_node ({limits.gpus_per_node:,})"
            )
        totals[node.gpu_model] += node.gpus_allocatable
    bounds = site.gpu_capacity if site is not None else {}
    if not bounds:
        return
    for model, count in sorted(totals.items()):
        if count and model not in bounds:
            raise BadReport(
                f"reports {count:,} {model[:64]!r} GPUs; the site's gpu_capacity declares none of that model"
            )
        if count > bounds.get(model, 0):
            raise BadReport(
                f"reports {count:,} {model[:64]} GPUs; the site's gpu_capacity allows {bounds[model]:,}"
            )
