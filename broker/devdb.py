"""Throwaway PostgreSQL clusters for the tests and benchmarks (Debian's server binaries).

`initdb` and `postgres` refuse to run as root, so as root they run as the `postgres`
user that Debian's package creates. A cluster lives in a temporary folder and is
stopped (immediately: nothing in it is worth keeping) and deleted on exit.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from broker.listen import free_port


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres_user(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres_cluster(*, fsync: bool = True) -> Iterator[str]:
    """A running cluster on 127.0.0.1; yields the URL of its `postgres` database.

    ``fsync=False`` suits tests (faster, crash-unsafe); benchmarks keep it on, as production would.
    """
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
    datadir = Path(tempfile.mkdtemp(prefix="fedbroker-pg-"))
    if os.geteuid() == 0:
        shutil.chown(datadir, "postgres", "postgres")
    port = free_port()
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-l", str(datadir / "log"), "-w"]
    try:
        subprocess.run(
            _as_postgres_user(
                [str(bindir / "initdb"), "-D", str(datadir / "data"), "-A", "trust", "-U", "fedbroker"]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync={'on' if fsync else 'off'}"
        subprocess.run(_as_postgres_user([*pg_ctl, "-o", options, "start"]), check=True, capture_output=True)
        yield f"postgresql://fedbroker@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(datadir, ignore_errors=True)


def create_database(server_url: str, name: str) -> str:
    """A fresh database on the cluster at ``server_url``; returns its URL."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"
