"""Shared fixtures: real databases (SQLite files, a throwaway PostgreSQL cluster)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.localfed import free_port
from broker.telemetry import setup_tracing

# Spans (and so trace ids) are only real under an SDK tracer provider, as in `fedbroker serve`.
setup_tracing("fedbroker-tests")


def _postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres_user(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; CI runs as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the session: FEDBROKER_TEST_PG_URL, or a throwaway local cluster."""
    if url := os.environ.get("FEDBROKER_TEST_PG_URL"):
        yield url
        return
    bindir = _postgres_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found (.ci/run installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    datadir = Path(tempfile.mkdtemp(prefix="fedbroker-pg-"))
    if os.geteuid() == 0:
        shutil.chown(datadir, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres_user(
            [str(bindir / "initdb"), "-D", str(datadir / "data"), "-A", "trust", "-U", "fedbroker"]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-l", str(datadir / "log"), "-w"]
    subprocess.run(_as_postgres_user([*pg_ctl, "-o", options, "start"]), check=True, capture_output=True)
    try:
        yield f"postgresql://fedbroker@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(datadir, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = postgres_server.rpartition("/")
    yield f"{base}/{name}"
    with contextlib.suppress(Exception), psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on both databases the broker supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'broker.db'}"
    return str(request.getfixturevalue("postgres_url"))
