"""fedbroker: the Python SDK of the federated GPU broker.

    from fedbroker import Client, Workload

`fedbroker.v1` holds the generated protobuf and gRPC modules (run protos/generate.py).
The SDK's names are loaded on first use, so importing `fedbroker.v1` (as the broker
itself does) never pulls the SDK in.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> (module, attribute): the SDK's public surface.
_EXPORTS = {
    "Client": ("broker.sdk.client", "Client"),
    "AsyncClient": ("broker.sdk.aio", "AsyncClient"),
    "Workload": ("broker.spec", "WorkloadSpec"),
    "Resources": ("broker.spec", "Resources"),
    "Ray": ("broker.spec", "RaySection"),
    "Kubernetes": ("broker.spec", "KubernetesSection"),
    "State": ("broker.sdk.models", "State"),
    "WorkloadStatus": ("broker.sdk.models", "WorkloadStatus"),
    "Event": ("broker.sdk.models", "Event"),
    "Explanation": ("broker.sdk.models", "Explanation"),
    "Candidate": ("broker.sdk.models", "Candidate"),
    "Site": ("broker.sdk.models", "Site"),
    "Usage": ("broker.sdk.models", "Usage"),
    "Quote": ("broker.sdk.models", "Quote"),
    "SiteQuote": ("broker.sdk.models", "SiteQuote"),
    "ClientError": ("broker.client", "ClientError"),
    "InvalidWorkloadError": ("broker.sdk.errors", "InvalidWorkloadError"),
    "RefusedError": ("broker.sdk.errors", "RefusedError"),
    "NotFoundError": ("broker.sdk.errors", "NotFoundError"),
    "AuthenticationError": ("broker.sdk.errors", "AuthenticationError"),
    "PermissionDeniedError": ("broker.sdk.errors", "PermissionDeniedError"),
    "UnavailableError": ("broker.sdk.errors", "UnavailableError"),
    "WaitTimeout": ("broker.sdk.errors", "WaitTimeout"),
    "InvalidInput": ("broker.validation", "InvalidInput"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fedbroker' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
