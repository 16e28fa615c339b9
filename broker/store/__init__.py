"""Durable state through sqlmodel: SQLite by default (WAL), PostgreSQL in production."""

from broker.store.db import Store, default_db_url
from broker.store.tables import (
    ChargeRow,
    DecisionRow,
    LedgerRow,
    SiteHeardRow,
    SiteRow,
    WorkloadEventRow,
    WorkloadRow,
)

__all__ = [
    "ChargeRow",
    "DecisionRow",
    "LedgerRow",
    "SiteHeardRow",
    "SiteRow",
    "Store",
    "WorkloadEventRow",
    "WorkloadRow",
    "default_db_url",
]
