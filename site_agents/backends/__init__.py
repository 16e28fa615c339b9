"""Backends: where a site's workloads really run. `make_backend` picks one from the agent config.

Ray and Kubernetes are imported only when a config names them, so an agent
without those extras installed still runs the simulated backend.
"""

from __future__ import annotations

from site_agents.backends.base import Backend
from site_agents.backends.simulated import SimulatedBackend
from site_agents.config import BackendConfig, KubernetesBackendConfig, RayBackendConfig


def make_backend(config: BackendConfig) -> Backend:
    """The configured backend; BackendUnavailable when its package or cluster config is missing."""
    if isinstance(config, RayBackendConfig):
        from site_agents.backends.ray import RayBackend

        return RayBackend(config)
    if isinstance(config, KubernetesBackendConfig):
        from site_agents.backends.kubernetes import KubernetesBackend

        return KubernetesBackend(config)
    return SimulatedBackend(config.node_groups, config.time_scale)
