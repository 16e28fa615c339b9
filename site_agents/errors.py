"""The site agent's errors, one small tree; the CLI turns each into a message and an exit code.

    AgentError
    ├── AgentRefused           the broker refused this agent (UNAUTHENTICATED, PERMISSION_DENIED):
    │                          retrying with the same credential cannot help, so the agent stops
    └── BackendError           a backend could not do what was asked; Kubernetes and Ray client
        │                      errors are translated into this at the backend's boundary
        ├── BackendUnavailable  the backend cannot be built here: its Python package (an extra)
        │                       is not installed, or its cluster config cannot be read
        └── AttemptNotFound     the backend does not know that attempt (logs of an unknown key)

A bad agent config is ``broker.validation.InvalidInput``, shared with the broker,
so that every "bad input" message has the same ``path: message`` shape.
"""

from __future__ import annotations


class AgentError(Exception):
    pass


class AgentRefused(AgentError):
    def __init__(self, code: str, details: str) -> None:
        self.code = code
        self.details = details
        super().__init__(f"the broker refused this agent ({code}): {details}")


class BackendError(AgentError):
    pass


class BackendUnavailable(BackendError):
    pass


class AttemptNotFound(BackendError):
    pass


def missing_extra(kind: str, package: str) -> BackendUnavailable:
    """The one message for a backend whose client library is not installed."""
    return BackendUnavailable(
        f"the {kind} backend needs the {package!r} Python package: pip install 'fedbroker[{kind}]'"
    )
