"""One scheduler at a time: a lease row in the database, with an epoch that fences.

The active broker holds the lease and renews it every `ttl_s / 3`; a standby takes it
once it has expired, which raises the epoch. Expiry is read on the database's clock, so
two brokers on two hosts never compare their own clocks. Every commit of the scheduler
re-checks, inside its own transaction, that it still holds the lease under its epoch
(`fence`): a broker that lost the lease, say while it was paused, cannot commit, and the
row lock that check takes keeps a takeover from interleaving with a commit in flight.

A lease row rather than an advisory lock on a held connection: a broker that is paused
(SIGSTOP, a long GC, a frozen VM) keeps its connection, so its lock would never pass to
the standby; a lease runs out. It works the same on SQLite (brokers on one host).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Update, select, text, update
from sqlalchemy.engine import Connection

from broker.store.db import Store
from broker.store.tables import LeaseRow

SCHEDULER = "scheduler"
_LEASES = LeaseRow.__table__  # type: ignore[attr-defined]
# Portable: both SQLite and PostgreSQL take ON CONFLICT ... DO NOTHING.
_CREATE = text(
    "INSERT INTO broker_lease (name, holder, address, epoch, expires_at) "
    "VALUES (:name, '', '', 0, 0) ON CONFLICT (name) DO NOTHING"
)


class LeaseLost(Exception):
    """This broker no longer holds the lease under its epoch: it must stop scheduling."""


@dataclass(frozen=True, slots=True)
class Holder:
    broker_id: str
    address: str
    epoch: int
    expires_in_s: float  # negative once expired


# The database's clock, in UNIX seconds (the statement's time, not the transaction's).
_NOW = {
    "sqlite": "(julianday('now') - 2440587.5) * 86400.0",
    "postgresql": "extract(epoch from clock_timestamp())",
}
_FENCE = {
    dialect: text(
        "UPDATE broker_lease SET holder = holder WHERE name = :name AND holder = :holder"
        f" AND epoch = :epoch AND expires_at > {now}"
    )
    for dialect, now in _NOW.items()
}


def _now(conn: Connection) -> float:
    return float(conn.execute(text(f"SELECT {_NOW[conn.dialect.name]}")).scalar_one())


class Lease:
    def __init__(self, store: Store, broker_id: str, address: str = "", ttl_s: float = 3.0) -> None:
        self.store = store
        self.broker_id = broker_id
        self.address = address
        self.ttl_s = ttl_s
        self.epoch = 0  # the epoch this broker holds; 0: none

    def holder(self) -> Holder | None:
        """Who holds the lease now (None: nobody ever has)."""
        with self.store.engine.connect() as conn:
            row = conn.execute(select(_LEASES).where(_LEASES.c.name == SCHEDULER)).one_or_none()
            if row is None:
                return None
            return Holder(row.holder, row.address, row.epoch, row.expires_at - _now(conn))

    def try_acquire(self) -> int | None:
        """Take the lease if it is free or expired; the new epoch, or None if another holds it."""
        with self.store.engine.begin() as conn:
            conn.execute(_CREATE, {"name": SCHEDULER})  # once per database
            now = _now(conn)
            taken = conn.execute(
                update(_LEASES)
                .where(_LEASES.c.name == SCHEDULER, _LEASES.c.expires_at < now)
                .values(
                    holder=self.broker_id,
                    address=self.address,
                    epoch=_LEASES.c.epoch + 1,
                    expires_at=now + self.ttl_s,
                )
                .returning(_LEASES.c.epoch)
            ).scalar_one_or_none()
        if taken is not None:
            self.epoch = int(taken)
        return self.epoch if taken is not None else None

    def renew(self) -> None:
        """Extend the lease by ttl_s from now; raises LeaseLost if another broker took it."""
        with self.store.engine.begin() as conn:
            now = _now(conn)
            kept = conn.execute(self._mine().values(expires_at=now + self.ttl_s)).rowcount
        if kept != 1:
            raise LeaseLost(f"broker {self.broker_id} lost the lease of epoch {self.epoch}")

    def fence(self, conn: Connection) -> None:
        """Inside a scheduler's transaction: raise LeaseLost unless the lease is still ours and
        unexpired. The row stays locked until that transaction ends. One statement, the clock
        read inside it: it runs with every commit."""
        held = conn.execute(
            _FENCE[conn.dialect.name],
            {"name": SCHEDULER, "holder": self.broker_id, "epoch": self.epoch},
        ).rowcount
        if held != 1:
            raise LeaseLost(f"broker {self.broker_id} no longer holds the lease of epoch {self.epoch}")

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so a standby need not wait for it to expire."""
        with self.store.engine.begin() as conn:
            conn.execute(self._mine().values(holder="", expires_at=0.0))
        self.epoch = 0

    def _mine(self) -> Update:
        return update(_LEASES).where(
            _LEASES.c.name == SCHEDULER,
            _LEASES.c.holder == self.broker_id,
            _LEASES.c.epoch == self.epoch,
        )
