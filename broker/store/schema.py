"""The schema's version, owned by Alembic (broker/store/migrations): create, adopt, upgrade, check.

Alembic is configured here, from Python, so it works from an installed package (no alembic.ini).
A database is in one of five states (`SchemaState.kind`):

- empty: none of fedbroker's tables. Made at once from the models and stamped at the head, as
  Alembic's docs advise for a new database (faster than replaying every migration).
- unversioned: tables but no alembic_version, made before Alembic owned the schema. Adopted:
  brought to the baseline (missing tables, columns, indexes added), stamped, then upgraded.
- behind, current, ahead: the revision stamped is older than, equal to, or unknown to this
  broker's migrations (ahead: a newer broker migrated it).

Schema work runs in one transaction under a lock (a PostgreSQL advisory lock, SQLite's write
lock), so brokers starting together on one database create or upgrade it once.
"""

from __future__ import annotations

import io
import logging
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import produce_migrations
from alembic.config import Config
from alembic.operations import Operations
from alembic.operations.ops import AddColumnOp, CreateIndexOp, CreateTableOp, MigrateOperation, ModifyTableOps
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from broker.store import tables  # noqa: F401  (registers the tables with the metadata)

log = logging.getLogger("fedbroker.store")
# Alembic narrates every context it sets up at INFO; the lines below say what was done instead.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"  # the tables as they were when Alembic took over
_LOCK_KEY = 0x66656462  # pg_advisory_xact_lock key for schema work ("fedb")

Kind = Literal["empty", "unversioned", "behind", "current", "ahead"]


class SchemaError(Exception):
    """The database's schema is not the one this broker runs with; the message says what to run."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    kind: Kind
    revision: str | None  # the database's stamped revision; None: not stamped
    head: str  # the newest revision this broker knows


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration without alembic.ini; migrations run on `connection` (env.py)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")  # 0003_add_workloads_foo.py
    config.attributes["connection"] = connection
    return config


@cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in scripts().walk_revisions())


def head() -> str:
    found = scripts().get_current_head()
    assert found is not None, "no migrations under broker/store/migrations/versions"
    return found


def read_state(conn: Connection) -> SchemaState:
    stamped = MigrationContext.configure(conn).get_current_heads()
    newest = head()
    if not stamped:
        ours = set(sa.inspect(conn).get_table_names()) & set(SQLModel.metadata.tables)
        return SchemaState("unversioned" if ours else "empty", None, newest)
    revision = stamped[0]
    if any(r not in known_revisions() for r in stamped):
        return SchemaState("ahead", revision, newest)
    return SchemaState("current" if stamped == (newest,) else "behind", revision, newest)


def prepare(engine: Engine, *, shown_url: str, auto_upgrade: bool) -> SchemaState:
    """Bring the database to the head before a broker uses it; the state it was found in.

    An empty database is always created. An older one (unversioned or behind) is upgraded only
    if `auto_upgrade`, else SchemaError says to run `fedbroker db upgrade`; a newer one (ahead)
    is always refused. `shown_url`: the URL with its password redacted, for messages."""
    with engine.connect() as conn:  # the usual case, current, needs no lock
        found = read_state(conn)
    if found.kind == "current":
        return found
    with locked(engine) as conn:
        found = read_state(conn)  # again: another broker may have done it while we waited
        if found.kind == "ahead":
            raise SchemaError(ahead_message(found, shown_url))
        if found.kind in ("unversioned", "behind") and not auto_upgrade:
            raise SchemaError(behind_message(found, shown_url))
        upgrade_locked(conn, found)
    return found


def upgrade(engine: Engine, *, shown_url: str) -> SchemaState:
    """`fedbroker db upgrade`: whatever state the database is in, to the head (ahead is refused)."""
    return prepare(engine, shown_url=shown_url, auto_upgrade=True)


def upgrade_locked(conn: Connection, found: SchemaState) -> None:
    if found.kind == "empty":
        SQLModel.metadata.create_all(conn, checkfirst=False)  # none of them exists: asking costs
        MigrationContext.configure(conn).stamp(scripts(), "head")
        log.info("created the database schema at revision %s", found.head)
        return
    if found.kind == "unversioned":
        added = adopt(conn)
        log.warning(
            "adopted a database created before schema migrations: brought it to the baseline "
            "revision %s (added: %s) and stamped it",
            BASELINE,
            ", ".join(added) or "nothing",
        )
    if found.kind in ("unversioned", "behind"):
        command.upgrade(alembic_config(conn), "head")
        log.info(
            "upgraded the database schema from revision %s to %s", found.revision or BASELINE, found.head
        )


def adopt(conn: Connection) -> list[str]:
    """Add what the baseline has and an unversioned database lacks (never drop or change
    anything), then stamp the baseline; returns what was added."""
    baseline: sa.MetaData = scripts().get_revision(BASELINE).module.baseline_metadata()
    context = MigrationContext.configure(conn, opts={"include_name": _only(baseline)})
    operations = Operations(context)
    added: list[str] = []
    for operation in _flat(produce_migrations(context, baseline).upgrade_ops.ops):  # type: ignore[union-attr]
        if isinstance(operation, AddColumnOp):
            operation = AddColumnOp(operation.table_name, _with_server_default(operation.column, conn))
            added.append(f"{operation.table_name}.{operation.column.name}")
        elif isinstance(operation, CreateTableOp):
            added.append(f"table {operation.table_name}")
        elif isinstance(operation, CreateIndexOp):
            added.append(f"index {operation.index_name}")
        else:
            log.warning("adopting the database: left as it is: %s", operation.to_diff_tuple())
            continue
        operations.invoke(operation)
    context.stamp(scripts(), BASELINE)
    return added


def check(conn: Connection) -> None:
    """Raise alembic.util.AutogenerateDiffsDetected if the models in tables.py and the database
    (at the head) differ: a change to tables.py without its migration."""
    config = alembic_config(conn)
    config.stdout = io.StringIO()  # not Alembic's "No new upgrade operations detected." on our stdout
    command.check(config)


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the database's schema lock (DDL is transactional on both)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            yield conn
        return
    if engine.url.database in (None, "", ":memory:"):  # one connection, one process: nothing to race
        with engine.begin() as conn:
            yield conn
        return
    # pysqlite opens no transaction before DDL: on a connection of its own, BEGIN IMMEDIATE
    # takes SQLite's write lock first (the SQLAlchemy docs' recipe), and another broker waits.
    serial = sa.create_engine(engine.url, poolclass=NullPool)
    sa.event.listen(serial, "connect", _no_implicit_transactions)
    sa.event.listen(serial, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with serial.begin() as conn:
            yield conn
    finally:
        serial.dispose()


def behind_message(found: SchemaState, shown_url: str) -> str:
    what = (
        "was created before schema migrations"
        if found.kind == "unversioned"
        else f"has schema revision {found.revision}, this broker needs {found.head}"
    )
    return (
        f"the database {shown_url} {what}: run `fedbroker db upgrade --db {shlex.quote(shown_url)}` "
        "(or with $FEDBROKER_DB_URL set), then start the broker again"
    )


def ahead_message(found: SchemaState, shown_url: str) -> str:
    return (
        f"the database {shown_url} has schema revision {found.revision}, newer than this broker's "
        f"{found.head}: this broker is older than the database: upgrade the broker"
    )


def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA busy_timeout=30000")  # wait out another broker's upgrade


def _only(metadata: sa.MetaData) -> Any:
    """An include_name hook: compare only `metadata`'s tables (not other applications')."""

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in metadata.tables

    return include_name


def _flat(operations: list[MigrateOperation]) -> Iterator[MigrateOperation]:
    for operation in operations:
        if isinstance(operation, ModifyTableOps):
            yield from operation.ops
        else:
            yield operation


def _with_server_default(column: sa.Column[Any], conn: Connection) -> sa.Column[Any]:
    """A NOT NULL column added to a table with rows needs a server default: its Python default."""
    copy = column._copy()
    if not column.nullable and column.server_default is None and column.default is not None:
        value = column.default.arg  # type: ignore[attr-defined]
        literal = sa.literal(value, column.type).compile(
            dialect=conn.dialect, compile_kwargs={"literal_binds": True}
        )
        copy.server_default = sa.DefaultClause(sa.text(str(literal)))
    return copy
