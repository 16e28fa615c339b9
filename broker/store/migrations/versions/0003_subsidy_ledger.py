"""The subsidy ledger: every reservation, settlement and release as a row, in exact decimals.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

- ledger: one row per reservation (at placement), settlement or release (when the attempt
  ends) of an attempt's money (broker/ledger.py). Money is NUMERIC(20, 8) on PostgreSQL and
  the decimal's text on SQLite (whose NUMERIC is a float underneath).
- The settled charges of revision 0001 are copied in as settlements (their floats rounded
  to the cent, as a settlement is); the charges table stays, no longer written.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(20, 8).with_variant(sa.String(32), "sqlite")  # frozen: tables.Money as of now
CENT = Decimal("0.01")
TEXT = sqlmodel.sql.sqltypes.AutoString()


def upgrade() -> None:
    ledger = op.create_table(
        "ledger",
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", TEXT, nullable=False),
        sa.Column("closes", sa.Integer(), nullable=True),
        sa.Column("workload_id", TEXT, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("tenant", TEXT, nullable=False),
        sa.Column("program", TEXT, nullable=True),
        sa.Column("site", TEXT, nullable=False),
        sa.Column("gpu_model", TEXT, nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("gpu_hours", MONEY, nullable=False),
        sa.Column("price_hkd_per_gpu_hour", MONEY, nullable=False),
        sa.Column("rate", MONEY, nullable=False),
        sa.Column("total_hkd", MONEY, nullable=False),
        sa.Column("program_hkd", MONEY, nullable=False),
        sa.Column("tenant_hkd", MONEY, nullable=False),
        sa.Column("held_program_hkd", MONEY, nullable=False),
        sa.Column("held_tenant_hkd", MONEY, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("reason", TEXT, nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("workload_id", "attempt", "closes"),
        sa.UniqueConstraint("workload_id", "attempt", "kind"),
    )
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_tenant_at", ["tenant", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_workload_id"), ["workload_id"], unique=False)
    bind = op.get_bind()
    charges = sa.table(
        "charges",
        *(
            sa.column(name)
            for name in (
                "workload_id",
                "attempt",
                "tenant",
                "program",
                "site",
                "gpu_model",
                "gpus",
                "hours",
                "price_hkd_per_gpu_hour",
                "cost_hkd",
                "program_hkd",
                "at",
            )
        ),
    )
    rows = [_settlement(r._mapping) for r in bind.execute(sa.select(charges))]
    if rows:
        op.bulk_insert(ledger, rows)


def _settlement(charge: sa.RowMapping) -> dict[str, object]:
    def exact(value: float) -> Decimal:
        return Decimal(repr(float(value)))

    total = exact(charge["cost_hkd"]).quantize(CENT, ROUND_HALF_EVEN)
    program = exact(charge["program_hkd"]).quantize(CENT, ROUND_HALF_EVEN)
    price = exact(charge["price_hkd_per_gpu_hour"])
    sqlite = op.get_bind().dialect.name == "sqlite"

    def money(value: Decimal) -> object:
        return str(value) if sqlite else value

    return {
        "kind": "settle",
        "closes": 1,
        "workload_id": charge["workload_id"],
        "attempt": charge["attempt"],
        "tenant": charge["tenant"],
        "program": charge["program"],
        "site": charge["site"],
        "gpu_model": charge["gpu_model"],
        "gpus": charge["gpus"],
        "gpu_hours": money((charge["gpus"] * exact(charge["hours"])).quantize(Decimal("1e-6"))),
        "price_hkd_per_gpu_hour": money(price),
        "rate": money((program / total).quantize(Decimal("1e-4")) if total else Decimal(0)),
        "total_hkd": money(total),
        "program_hkd": money(program),
        "tenant_hkd": money(total - program),
        "held_program_hkd": money(Decimal(0)),
        "held_tenant_hkd": money(Decimal(0)),
        "at": charge["at"],
        "reason": "settled before revision 0003 (copied from charges)",
    }


def downgrade() -> None:
    with op.batch_alter_table("ledger", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_workload_id"))
        batch_op.drop_index("ix_ledger_tenant_at")
    op.drop_table("ledger")
