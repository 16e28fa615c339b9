"""Indexes for the engine's queries; JSON columns become JSONB on PostgreSQL.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01

- workloads (site, state, acked): List by site, a site's placed or unacknowledged work.
- workloads (name): a workload named on the command line (broker/store/lookups.py).
- workload_events (workload_id, seq) and decisions (workload_id, seq): a workload's events
  after a point, its latest decision; each replaces the index on workload_id alone.
- JSONB: stored parsed (smaller, no re-parse on read) and indexable should a query need it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON_COLUMNS = {
    "workloads": ("spec", "nodes"),
    "decisions": ("explanation",),
    "sites": ("nodes", "datasets", "running"),
}


def upgrade() -> None:
    op.create_index("ix_workloads_site_state_acked", "workloads", ["site", "state", "acked"])
    op.create_index("ix_workloads_name", "workloads", ["name"])
    op.create_index("ix_workload_events_workload_id_seq", "workload_events", ["workload_id", "seq"])
    op.drop_index("ix_workload_events_workload_id", table_name="workload_events")
    op.create_index("ix_decisions_workload_id_seq", "decisions", ["workload_id", "seq"])
    op.drop_index("ix_decisions_workload_id", table_name="decisions")
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in JSON_COLUMNS.items():
            for column in columns:
                op.alter_column(
                    table,
                    column,
                    type_=postgresql.JSONB(),
                    existing_type=sa.JSON(),
                    existing_nullable=False,
                    postgresql_using=f"{column}::jsonb",
                )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in JSON_COLUMNS.items():
            for column in columns:
                op.alter_column(
                    table,
                    column,
                    type_=sa.JSON(),
                    existing_type=postgresql.JSONB(),
                    existing_nullable=False,
                    postgresql_using=f"{column}::json",
                )
    op.create_index("ix_decisions_workload_id", "decisions", ["workload_id"])
    op.drop_index("ix_decisions_workload_id_seq", table_name="decisions")
    op.create_index("ix_workload_events_workload_id", "workload_events", ["workload_id"])
    op.drop_index("ix_workload_events_workload_id_seq", table_name="workload_events")
    op.drop_index("ix_workloads_name", table_name="workloads")
    op.drop_index("ix_workloads_site_state_acked", table_name="workloads")
