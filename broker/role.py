"""The broker's role in an active/standby pair: what its health and its role metric report.

Only ``active`` exists until issue 8 (a standby that takes over) is built; the standby logic
will call `BrokerRole.set`, and the health service and the role gauge follow without
changes of their own.
"""

from __future__ import annotations

from collections.abc import Callable

ACTIVE = "active"
STANDBY = "standby"
ROLES = (ACTIVE, STANDBY)


class BrokerRole:
    def __init__(self, role: str = ACTIVE) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown broker role {role!r}")
        self._role = role
        self._listeners: list[Callable[[str], None]] = []

    @property
    def current(self) -> str:
        return self._role

    @property
    def active(self) -> bool:
        return self._role == ACTIVE

    def set(self, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown broker role {role!r}")
        if role != self._role:
            self._role = role
            for listener in list(self._listeners):
                listener(role)

    def on_change(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)
