"""What the core knows about one site: its static config and the live view from its agent
(health, inventory index, datasets its storage reports, workloads it reports running)."""

from __future__ import annotations

from .capacity import SiteCapacity
from .model import SiteConfig


class SiteView:
    """One site as filters and scorers see it. Mutated only by the core."""

    __slots__ = ("capacity", "config", "healthy", "name", "reported", "running")

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.name = config.name
        self.healthy = False  # until the first report and set_healthy(True)
        self.reported = False  # a site that never reported has no known nodes
        self.capacity = SiteCapacity()
        self.running: frozenset[str] = frozenset()  # workload ids of the latest report

    def load_after(self, gpus: int) -> float:
        """GPU utilisation of the whole site if ``gpus`` more were taken (0..1, 1 if empty)."""
        cap = self.capacity
        if cap.gpus_total <= 0:
            return 1.0
        return min(1.0, max(0.0, 1.0 - (cap.gpus_free - gpus) / cap.gpus_total))
