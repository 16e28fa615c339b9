"""The soak under faults, short (CI): SQLite with one broker, PostgreSQL with a standby.

`python -m tests.soak --seconds 600` is the long run (see tests/soak/__main__.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak.harness import Plan, Soak


def _soak(tmp_path: Path, plan: Plan) -> None:
    report = Soak(tmp_path, plan).run()
    print(report.table())  # shown with -s, and on failure
    assert report.did["submits acknowledged"] > 200
    for fault in ("kill agent", "partition agent", "kill broker"):
        assert report.did[f"faults: {fault}"] >= 1, report.table()
    assert not report.problems, report.table()


def test_soak_on_sqlite_with_one_broker(tmp_path: Path) -> None:
    _soak(tmp_path, Plan(db_url=f"sqlite:///{tmp_path / 'broker.db'}", seconds=15, seed=7))


@pytest.mark.usefixtures("postgres_server")
def test_soak_on_postgresql_with_a_standby(tmp_path: Path, postgres_url: str) -> None:
    _soak(tmp_path, Plan(db_url=postgres_url, brokers=2, seconds=15, seed=11))
