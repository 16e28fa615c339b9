"""Shared fixtures: real databases (SQLite files, a throwaway PostgreSQL cluster)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.devdb import create_database, postgres_bindir, postgres_cluster
from broker.telemetry import setup_tracing

# Spans (and so trace ids) are only real under an SDK tracer provider, as in `fedbroker serve`.
setup_tracing("fedbroker-tests")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the session: FEDBROKER_TEST_PG_URL, or a throwaway local cluster."""
    if url := os.environ.get("FEDBROKER_TEST_PG_URL"):
        yield url
        return
    if postgres_bindir() is None:
        message = "PostgreSQL server binaries not found (.ci/run installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with postgres_cluster(fsync=False) as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    yield create_database(postgres_server, name)
    with contextlib.suppress(Exception), psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on both databases the broker supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'broker.db'}"
    return str(request.getfixturevalue("postgres_url"))
