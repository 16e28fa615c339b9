"""Backends: where a site's workloads really run. `make_backend` picks one from the agent config."""

from __future__ import annotations

from site_agents.backends.base import Backend
from site_agents.backends.simulated import SimulatedBackend
from site_agents.config import BackendConfig, SimulatedBackendConfig
from site_agents.errors import BackendNotImplemented


def make_backend(config: BackendConfig) -> Backend:
    if isinstance(config, SimulatedBackendConfig):
        return SimulatedBackend(config.node_groups, config.time_scale)
    # kubernetes and ray configs validate today so that sites can write them; the backends come next.
    raise BackendNotImplemented(
        f"backend kind {config.kind!r} is not implemented yet (this version runs only 'simulated')"
    )
