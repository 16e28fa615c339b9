"""Where datasets are and how long moving them takes: the locality score's knowledge.

A site holds a dataset when federation.yaml says so or its agent's storage reports it.
Moving a dataset to a site that lacks it takes ``size_gb * 8 / gbit_s / 3600`` hours from
the nearest holder (fastest link). Sites with no configured link between them are assumed
to move data at ``default_gbit_s`` (1 Gbit/s by default: a slow WAN path, so missing
links are pessimistic). A dataset that no site holds, or that the config does not define,
adds nothing: there is nothing known to move (the broker validates names at submit).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .model import Dataset

DEFAULT_LINK_GBIT_S = 1.0


class DatasetCatalog:
    def __init__(
        self,
        datasets: Iterable[Dataset],
        links_gbit_s: Mapping[frozenset[str], float],
        default_gbit_s: float = DEFAULT_LINK_GBIT_S,
    ) -> None:
        self._datasets = {d.name: d for d in datasets}
        self._links = dict(links_gbit_s)
        self._default = default_gbit_s
        self._reported: dict[str, frozenset[str]] = {}  # site -> datasets its storage reports
        self._hours: dict[tuple[str, str], float] = {}  # (dataset, site) -> hours, cached

    def report(self, site: str, datasets: Iterable[str]) -> bool:
        """Record what the site's storage holds; True if that changed."""
        held = frozenset(datasets)
        if self._reported.get(site, frozenset()) == held:
            return False
        self._reported[site] = held
        self._hours.clear()  # holders changed: every estimate may change
        return True

    def reported(self, site: str) -> frozenset[str]:
        return self._reported.get(site, frozenset())

    def holders(self, dataset: str) -> frozenset[str]:
        configured = self._datasets.get(dataset)
        sites = set() if configured is None else set(configured.replicas)
        sites.update(s for s, held in self._reported.items() if dataset in held)
        return frozenset(sites)

    def gbit_s(self, a: str, b: str) -> float:
        return self._links.get(frozenset((a, b)), self._default)

    def hours_one(self, dataset: str, site: str) -> float:
        key = (dataset, site)
        hit = self._hours.get(key)
        if hit is not None:
            return hit
        holders = self.holders(dataset)
        d = self._datasets.get(dataset)
        if d is None or not holders or site in holders:
            hours = 0.0
        else:
            hours = d.size_gb * 8 / max(self.gbit_s(h, site) for h in holders) / 3600
        self._hours[key] = hours
        return hours

    def hours(self, datasets: Iterable[str], site: str) -> float:
        return sum(self.hours_one(d, site) for d in datasets)
