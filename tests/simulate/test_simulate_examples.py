"""The shipped example federation and mappings load and cover the public traces' clusters."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import load_federation
from broker.simulate import load_mapping

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "simulate"
CLUSTERS = {
    "itp-mapping.yaml": {f"cluster{i:02d}" for i in range(1, 11)},  # the ITP trace's ten clusters
    "openb-mapping.yaml": {"openb"},
}


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_example_mapping_loads_against_the_example_federation(name: str) -> None:
    config = load_federation(EXAMPLES / "federation.yaml")
    mapping = load_mapping(EXAMPLES / name, config)
    assert set(mapping.clusters) == CLUSTERS[name]
    assert set(mapping.sites) == {"cyberport", "sandy-ridge"}
    # Cyberport is the hot home site: most tenants live there
    homes = [t.home for t in mapping.tenants.values()]
    assert homes.count("cyberport") > homes.count("sandy-ridge")
