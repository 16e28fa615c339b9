"""Durable state through sqlmodel: SQLite by default (WAL), PostgreSQL in production."""

from broker.store.db import Store, default_db_url
from broker.store.tables import DecisionRow, SiteRow, WorkloadEventRow, WorkloadRow

__all__ = ["DecisionRow", "SiteRow", "Store", "WorkloadEventRow", "WorkloadRow", "default_db_url"]
