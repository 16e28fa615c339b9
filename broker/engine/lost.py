"""A lost attempt's GPUs, taken off the last report of a site that went silent.

A site's agent reports its nodes' allocated GPUs; the broker keeps the last report until
the next. When the site goes silent and its running work is requeued after the grace,
no report will ever say those GPUs were freed, so `sites` would go on counting the dead
attempt as allocated. The attempt is gone from the broker's point of view: its GPUs come
off the snapshot (and the stored copy). If the agent returns, its next report says what
is really allocated, as always.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, replace

from broker.engine.links import SiteLink
from broker.engine.tx import Tx
from broker.placement import Node, PlacementCore


def release_lost_attempt(
    core: PlacementCore,
    tx: Tx,
    link: SiteLink,
    workload_id: str,
    nodes: tuple[str, ...],
    gpus_per_replica: int,
) -> None:
    if link.stored is None:
        return
    stored_nodes, datasets, running = link.stored
    assert isinstance(stored_nodes, tuple) and isinstance(datasets, tuple) and isinstance(running, frozenset)
    if workload_id not in running:
        return  # never reported running: its GPUs were only reserved, and the requeue released them
    taken = Counter(nodes)
    new_nodes: tuple[Node, ...] = tuple(
        replace(n, gpus_allocated=max(0, n.gpus_allocated - taken[n.name] * gpus_per_replica))
        if n.name in taken
        else n
        for n in stored_nodes
    )
    still_running = running - {workload_id}
    core.update_site(link.name, nodes=new_nodes, datasets=datasets, running=still_running)
    link.stored = (new_nodes, datasets, still_running)
    link.last_inventory, link.settled = None, False  # the agent's next report is applied in full
    tx.sites[link.name] = {
        "name": link.name,
        "nodes": [asdict(n) for n in new_nodes],
        "datasets": list(datasets),
        "running": sorted(still_running),
    }
