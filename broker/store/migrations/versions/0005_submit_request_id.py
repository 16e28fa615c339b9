"""workloads.request_id: idempotent submit.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

- workloads.request_id: the client's id for the submit that made the workload
  (SubmitRequest.request_id), NULL when none was given; unique per tenant, so a retried submit
  finds its workload and never makes a second (broker/engine/requests.py). A unique index, which
  SQLite adds in place (a constraint would copy the table).
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index("ux_workloads_tenant_request_id", ["tenant", "request_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.drop_index("ux_workloads_tenant_request_id")
        batch_op.drop_column("request_id")
