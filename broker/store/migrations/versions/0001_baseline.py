"""Baseline: the tables as `create_all` made them before Alembic owned the schema.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Frozen here (not imported from tables.py, which moves on) because a database created before
Alembic is adopted by comparing it with exactly these tables (broker/store/schema.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def baseline_metadata() -> sa.MetaData:
    """Today's tables. Column defaults matter for adoption: a NOT NULL column an older database
    lacks is added with its default as the server default, so existing rows get it."""
    metadata = sa.MetaData()
    sa.Table(
        "workloads",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("backend", sa.String, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("site", sa.String, nullable=True),
        sa.Column("nodes", sa.JSON, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, default=0),
        sa.Column("acked", sa.Boolean, nullable=False, default=False),
        sa.Column("trace_id", sa.String, nullable=False, default=""),
        sa.Column("traceparent", sa.String, nullable=False, default=""),
        sa.Column("message", sa.String, nullable=False, default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("reason", sa.String, nullable=False, default=""),
        sa.Column("infra_requeues", sa.Integer, nullable=False, default=0),
        sa.Column("doubt_requeues", sa.Integer, nullable=False, default=0),
        sa.Column("retry_at", sa.Float, nullable=True),
        sa.Column("preemptions", sa.Integer, nullable=False, default=0),
        sa.Index("ix_workloads_id", "id", unique=True),
        sa.Index("ix_workloads_tenant", "tenant"),
        sa.Index("ix_workloads_state", "state"),
    )
    sa.Table(
        "workload_events",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("workload_id", sa.String, nullable=False),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("site", sa.String, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False, default=0),
        sa.Column("message", sa.String, nullable=False, default=""),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.String, nullable=False, default=""),
        sa.Index("ix_workload_events_workload_id", "workload_id"),
    )
    sa.Table(
        "decisions",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.String, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, default=0),
        sa.Column("chosen", sa.String, nullable=True),
        sa.Column("explanation", sa.JSON, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Index("ix_decisions_workload_id", "workload_id"),
    )
    sa.Table(
        "sites",
        metadata,
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("nodes", sa.JSON, nullable=False),
        sa.Column("datasets", sa.JSON, nullable=False),
        sa.Column("running", sa.JSON, nullable=False),
    )
    sa.Table(
        "settings",
        metadata,
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.String, nullable=False, default=""),
    )
    sa.Table(
        "charges",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.String, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("tenant", sa.String, nullable=False),
        sa.Column("program", sa.String, nullable=True),
        sa.Column("site", sa.String, nullable=False),
        sa.Column("gpu_model", sa.String, nullable=False),
        sa.Column("gpus", sa.Integer, nullable=False),
        sa.Column("hours", sa.Float, nullable=False),
        sa.Column("price_hkd_per_gpu_hour", sa.Float, nullable=False),
        sa.Column("cost_hkd", sa.Float, nullable=False),
        sa.Column("program_hkd", sa.Float, nullable=False),
        sa.Column("tenant_hkd", sa.Float, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.UniqueConstraint("workload_id", "attempt"),
        sa.Index("ix_charges_workload_id", "workload_id"),
        sa.Index("ix_charges_tenant", "tenant"),
    )
    sa.Table(
        "broker_lease",
        metadata,
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("holder", sa.String, nullable=False, default=""),
        sa.Column("address", sa.String, nullable=False, default=""),
        sa.Column("epoch", sa.Integer, nullable=False, default=0),
        sa.Column("expires_at", sa.Float, nullable=False, default=0.0),
    )
    return metadata


def upgrade() -> None:
    baseline_metadata().create_all(op.get_bind())


def downgrade() -> None:
    baseline_metadata().drop_all(op.get_bind())
