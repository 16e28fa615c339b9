"""Write the next migration from what tables.py now says: `alembic revision --autogenerate`, without
alembic.ini (README "Database and upgrades").

    python -m broker.store.new_migration "add workloads.priority"

It replays every migration into a scratch SQLite database (or `--db URL`, a database at the
head, e.g. an empty PostgreSQL one), compares that with the models and writes
broker/store/migrations/versions/NNNN_<slug>.py. Read it before committing: autogenerate
misses renames (it writes a drop and an add) and data moves, and a NOT NULL column on a table
with rows needs a server_default. tests/store/test_migrations.py then checks the result on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command

from broker.store import schema
from broker.store.db import open_engine


def next_revision_id() -> str:
    """Revisions are numbered 0001, 0002, ...: their files sort in the order they apply."""
    numbers = [int(r) for r in schema.known_revisions() if r.isdigit()]
    return f"{max(numbers, default=0) + 1:04d}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("message", help="what the migration does, e.g. 'add workloads.priority'")
    parser.add_argument(
        "--db", help="compare with this database (at the head) instead of a scratch SQLite one"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        engine = open_engine(args.db or f"sqlite:///{Path(scratch) / 'head.db'}")
        with engine.begin() as conn:
            command.upgrade(schema.alembic_config(conn), "head")  # the migrations, not create_all
            command.revision(
                schema.alembic_config(conn),
                message=args.message,
                autogenerate=True,
                rev_id=next_revision_id(),
            )
        engine.dispose()


if __name__ == "__main__":
    main()
