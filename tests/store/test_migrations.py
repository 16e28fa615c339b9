"""The schema under Alembic, on real SQLite and PostgreSQL: migrations agree with the models, an
upgrade keeps every row, older and newer databases are refused by `serve` with the command to
run (never a password), and a database made before Alembic is adopted."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import SQLModel

from broker.listen import free_port
from broker.localfed import EXAMPLES
from broker.store import Store, schema
from broker.store.db import open_engine

SECRET = "s3cret-Pa55"  # the test clusters trust every login, so any password connects


def with_password(url: str) -> str:
    """A PostgreSQL URL given a password (SQLite URLs have none)."""
    return url.replace("fedbroker@", f"fedbroker:{SECRET}@") if url.startswith("postgresql") else url


def migrate(url: str, revision: str) -> None:
    """Run the migration scripts themselves (not the fresh database's create_all) to `revision`."""
    engine = open_engine(url)
    with engine.begin() as conn:
        command.upgrade(schema.alembic_config(conn), revision)
    engine.dispose()


def fedbroker(*args: str, db_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real entry point, the URL in $FEDBROKER_DB_URL (as an operator would keep a secret)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(FEDBROKER_DB_URL=db_url, FEDBROKER_CONFIG="/nonexistent")
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def serve(db_url: str) -> subprocess.CompletedProcess[str]:
    return fedbroker(
        "serve", "--config", str(EXAMPLES / "federation.yaml"), "--listen", "127.0.0.1:0", db_url=db_url
    )


def all_rows(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as plain values (JSON parsed), in primary-key order."""
    engine = open_engine(url)
    metadata = sa.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        found = {
            name: [dict(r._mapping) for r in conn.execute(sa.select(t).order_by(*t.primary_key.columns))]
            for name, t in metadata.tables.items()
            if name != "alembic_version"
        }
    engine.dispose()
    return found


def fill(url: str, metadata: sa.MetaData) -> None:
    """Rows in each table of `metadata` that has them here, written through `metadata`'s columns."""
    spec = {"name": "train", "resources": {"gpus_per_replica": 8, "gpu_model": "H800"}, "env": {"A": "é"}}
    rows: dict[str, list[dict[str, Any]]] = {
        "workloads": [
            {
                "seq": seq,
                "id": f"w-{seq}",
                "name": "train",
                "tenant": "lion-rock-ai",
                "backend": "kubernetes",
                "spec": spec,
                "state": state,
                "site": site,
                "nodes": ["n1", "n2"] if site else [],
                "attempt": 1,
                "acked": site is not None,
                "trace_id": "t",
                "traceparent": "",
                "message": "",
                "created_at": 1000.5 + seq,
                "updated_at": 1001.25 + seq,
            }
            for seq, state, site in (
                (1, "RUNNING", "kowloon"),
                (2, "QUEUED", None),
                (3, "SUCCEEDED", "shatin"),
            )
        ],
        "workload_events": [
            {"seq": 1, "workload_id": "w-1", "state": "PLACED", "site": "kowloon", "attempt": 1, "at": 1.5},
            {"seq": 2, "workload_id": "w-1", "state": "RUNNING", "site": "kowloon", "attempt": 1, "at": 2.5},
        ],
        "decisions": [
            {
                "workload_id": "w-1",
                "attempt": 1,
                "chosen": "kowloon",
                "at": 1.0,
                "explanation": {"z": 1, "a": [2]},
            }
        ],
        "sites": [
            {"name": "kowloon", "nodes": [{"name": "n1", "gpus": 8}], "datasets": ["d"], "running": ["w-1"]}
        ],
        "settings": [{"name": "placement_paused", "value": "1"}],
        "charges": [
            {
                "workload_id": "w-3",
                "attempt": 1,
                "tenant": "lion-rock-ai",
                "program": None,
                "site": "shatin",
                "gpu_model": "H800",
                "gpus": 8,
                "hours": 0.5,
                "price_hkd_per_gpu_hour": 20.0,
                "cost_hkd": 80.0,
                "program_hkd": 0.0,
                "tenant_hkd": 80.0,
                "at": 3.0,
            }
        ],
        "broker_lease": [
            {"name": "scheduler", "holder": "b-1", "address": "h:1", "epoch": 7, "expires_at": 9.5}
        ],
    }
    engine = open_engine(url)
    with engine.begin() as conn:
        for name, table in metadata.tables.items():
            columns = set(table.columns.keys())
            values = [{k: v for k, v in row.items() if k in columns} for row in rows[name]]
            conn.execute(sa.insert(table), values)
    engine.dispose()


def baseline_metadata() -> sa.MetaData:
    return schema.scripts().get_revision(schema.BASELINE).module.baseline_metadata()  # type: ignore[no-any-return]


def test_the_migrations_make_what_the_models_say_and_the_fresh_path_agrees(db_url: str) -> None:
    # Replayed one by one, down to nothing and up again: autogenerate finds no difference from
    # tables.py. A column added to tables.py without its migration fails here.
    migrate(db_url, "head")
    engine = open_engine(db_url)
    with engine.begin() as conn:
        schema.check(conn)
        command.downgrade(schema.alembic_config(conn), "base")
        assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
        command.upgrade(schema.alembic_config(conn), "head")
        schema.check(conn)
        command.downgrade(schema.alembic_config(conn), "base")
        conn.execute(sa.text("DROP TABLE alembic_version"))
    engine.dispose()

    store = Store(db_url)  # an empty database: create_all and a stamp, no migrations replayed
    assert store.schema.kind == "empty"
    with store.engine.begin() as conn:
        assert schema.read_state(conn).kind == "current"
        schema.check(conn)
    store.close()


def test_an_upgrade_from_the_baseline_keeps_every_row(db_url: str) -> None:
    url = with_password(db_url)
    migrate(url, schema.BASELINE)
    fill(url, baseline_metadata())
    before = all_rows(url)

    upgraded = fedbroker("db", "upgrade", db_url=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"upgraded from revision {schema.BASELINE} to {schema.head()}" in upgraded.stdout
    assert SECRET not in upgraded.stdout + upgraded.stderr

    after = all_rows(url)
    for table, rows in before.items():  # every row and value is there (later columns aside)
        assert [{k: r[k] for k in rows[0]} for r in after[table]] == rows
    assert after["decisions"][0]["explanation"] == {"z": 1, "a": [2]}
    assert after["workloads"][0]["spec"]["env"] == {"A": "é"}
    if url.startswith("postgresql"):
        engine = open_engine(url)
        types = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("workloads")}
        engine.dispose()
        assert type(types["spec"]).__name__ == "JSONB"
    checked = fedbroker("db", "check", db_url=url)
    assert checked.returncode == 0, checked.stderr
    again = fedbroker("db", "upgrade", db_url=url)
    assert again.returncode == 0 and "already at revision" in again.stdout


def test_serve_on_postgresql_behind_refuses_and_names_the_command_without_the_password(
    postgres_url: str,
) -> None:
    url = with_password(postgres_url)
    migrate(url, schema.BASELINE)
    refused = serve(url)
    assert refused.returncode == 1, refused.stderr
    assert f"has schema revision {schema.BASELINE}, this broker needs {schema.head()}" in refused.stderr
    assert "run `fedbroker db upgrade --db 'postgresql://fedbroker:***@" in refused.stderr
    assert SECRET not in refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr

    current = fedbroker("db", "current", db_url=url)
    assert f"revision {schema.BASELINE} (behind; this broker's: {schema.head()})" in current.stdout
    assert SECRET not in current.stdout + current.stderr
    assert fedbroker("db", "check", db_url=url).returncode == 1


def test_a_database_newer_than_the_broker_is_refused_by_serve_and_upgrade(db_url: str) -> None:
    url = with_password(db_url)
    Store(url).close()
    engine = open_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(
        schema.SchemaError, match="this broker is older than the database: upgrade the broker"
    ):
        Store(url)
    for result in (serve(url), fedbroker("db", "upgrade", db_url=url)):
        assert result.returncode == 1, result.stderr
        assert "revision 9999" in result.stderr
        assert "this broker is older than the database: upgrade the broker" in result.stderr
        assert SECRET not in result.stdout + result.stderr


def test_serve_on_sqlite_upgrades_its_database_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / "broker.db"
    migrate(f"sqlite:///{db}", schema.BASELINE)
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    args = [
        "serve",
        "--config",
        str(EXAMPLES / "federation.yaml"),
        "--db",
        str(db),
        "--listen",
        "127.0.0.1:0",
    ]
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "broker", *args], stderr=out, stdout=out, env=env)
    try:
        deadline = time.monotonic() + 60
        while (
            "listening on" not in log.read_text() and process.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        text = log.read_text()
        assert "listening on" in text, text
        assert f"upgraded the database schema from revision {schema.BASELINE} to {schema.head()}" in text
    finally:
        process.terminate()
        process.wait(timeout=30)


def legacy_metadata() -> sa.MetaData:
    """Tables as an early broker's `create_all` made them: before the requeue counters, the
    events' reason, charges, settings and the lease."""
    metadata = sa.MetaData()
    sa.Table(
        "workloads",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("id", sa.String, nullable=False, index=True, unique=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("tenant", sa.String, nullable=False, index=True),
        sa.Column("backend", sa.String, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("state", sa.String, nullable=False, index=True),
        sa.Column("site", sa.String),
        sa.Column("nodes", sa.JSON, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("acked", sa.Boolean, nullable=False),
        sa.Column("trace_id", sa.String, nullable=False),
        sa.Column("traceparent", sa.String, nullable=False),
        sa.Column("message", sa.String, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
    )
    sa.Table(
        "workload_events",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("workload_id", sa.String, nullable=False, index=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("site", sa.String),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("message", sa.String, nullable=False, default=""),
        sa.Column("at", sa.Float, nullable=False),
    )
    sa.Table(
        "decisions",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("workload_id", sa.String, nullable=False, index=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("chosen", sa.String),
        sa.Column("explanation", sa.JSON, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    sa.Table(
        "sites",
        metadata,
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("nodes", sa.JSON, nullable=False),
        sa.Column("datasets", sa.JSON, nullable=False),
        sa.Column("running", sa.JSON, nullable=False),
    )
    return metadata


def test_a_database_made_before_migrations_is_adopted_with_its_rows(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = legacy_metadata()
    engine = open_engine(db_url)
    legacy.create_all(engine)
    engine.dispose()
    fill(db_url, legacy)
    before = all_rows(db_url)

    if db_url.startswith("postgresql"):  # serve leaves an older PostgreSQL database to the operator
        with pytest.raises(
            schema.SchemaError, match="was created before schema migrations: run `fedbroker db"
        ):
            Store(db_url, auto_upgrade=False)
    with caplog.at_level(logging.INFO, logger="fedbroker.store"):
        store = Store(db_url)
    assert store.schema.kind == "unversioned"
    adopted = [r.getMessage() for r in caplog.records if "adopted a database" in r.getMessage()]
    assert len(adopted) == 1
    for added in (
        "workloads.reason",
        "workloads.preemptions",
        "workload_events.reason",
        "table broker_lease",
    ):
        assert added in adopted[0]

    after = all_rows(db_url)
    for table, rows in before.items():  # what was there is there, with the new columns' defaults
        assert [{k: r[k] for k in rows[0]} for r in after[table]] == rows
    assert {
        (r["reason"], r["infra_requeues"], r["preemptions"], r["retry_at"]) for r in after["workloads"]
    } == {("", 0, 0, None)}
    assert {r["reason"] for r in after["workload_events"]} == {""}
    with store.engine.begin() as conn:
        assert schema.read_state(conn).kind == "current"
        schema.check(conn)  # adopted, it is the schema a new database gets
    store.close()
    assert Store(db_url).schema.kind == "current"


def test_brokers_starting_together_on_an_empty_database_create_it_once(db_url: str) -> None:
    found: list[str] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            store = Store(db_url)
            found.append(store.schema.kind)
            store.close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(found).count("empty") == 1, found  # the others waited, then found it current
    assert set(SQLModel.metadata.tables) <= set(all_rows(db_url))


def test_db_commands_take_a_plain_path_and_keep_a_password_out_of_their_errors(tmp_path: Path) -> None:
    db = tmp_path / "state" / "broker.db"
    db.parent.mkdir()
    created = fedbroker("db", "upgrade", "--db", str(db), db_url="")
    assert created.returncode == 0, created.stderr
    assert f"sqlite:///{db}: created the schema at revision {schema.head()}" in created.stdout
    current = fedbroker("db", "current", "--db", str(db), db_url="")
    assert f"revision {schema.head()} (current;" in current.stdout

    unreachable = f"postgresql://fed:{SECRET}@127.0.0.1:{free_port()}/fed"
    for command_name in ("upgrade", "current", "check"):
        result = fedbroker("db", command_name, db_url=unreachable)
        assert result.returncode == 1 and "error:" in result.stderr, result.stderr
        assert "postgresql://fed:***@127.0.0.1" in result.stderr
        assert SECRET not in result.stdout + result.stderr and "Traceback" not in result.stderr
