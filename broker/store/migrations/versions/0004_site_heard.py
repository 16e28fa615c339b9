"""site_heard: when each site was last heard from.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

- site_heard: one row per site, its last report's wall time, stored at most every few seconds
  while the site runs work (broker/engine/state.py `checkpoint_heard`), so that a broker that
  restarts bills a lost attempt until its site was last heard from, not only until its start.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_heard",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("site_heard")
