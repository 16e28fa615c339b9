"""bench/e2e.py --repeat: each (database, K) row's spread over its interleaved runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "e2e.py"


@pytest.fixture(scope="module")
def e2e() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_e2e", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_e2e"] = module
    spec.loader.exec_module(module)
    return module


def _row(
    db: str, sites: int, rate: float, placed: float, running: float, fronts: int = 0
) -> dict[str, object]:
    return {
        "db": db,
        "sites": sites,
        "fronts": fronts,
        "submits_per_s": rate,
        "placed_p99_ms": placed,
        "running_p99_ms": running,
    }


def test_each_row_gets_its_median_range_and_worst_p99s(e2e: ModuleType) -> None:
    rows = [  # two rounds of (sqlite, 2), (sqlite, 10), interleaved as --repeat runs them
        _row("sqlite", 2, 1300.0, 8.0, 14.0),
        _row("sqlite", 10, 1100.0, 9.0, 17.0),
        _row("sqlite", 2, 1200.0, 12.0, 13.0),
        _row("sqlite", 10, 950.0, 7.0, 30.0),
        _row("sqlite", 10, 1050.0, 8.0, 16.0),
        _row("sqlite", 10, 1400.0, 6.0, 12.0, fronts=1),  # another row: not mixed into fronts 0's
    ]
    spread = {(s["db"], s["sites"], s["fronts"]): s for s in e2e.spread_rows(rows)}
    assert spread[("sqlite", 2, 0)] == {
        "db": "sqlite",
        "sites": 2,
        "fronts": 0,
        "runs": 2,
        "submits_per_s_median": 1250.0,
        "submits_per_s_min": 1200.0,
        "submits_per_s_max": 1300.0,
        "placed_p99_ms_max": 12.0,
        "running_p99_ms_max": 14.0,
    }
    assert spread[("sqlite", 10, 1)]["submits_per_s_median"] == 1400.0
    ten = spread[("sqlite", 10, 0)]
    assert (ten["runs"], ten["submits_per_s_median"], ten["submits_per_s_min"]) == (3, 1050.0, 950.0)
    assert (ten["placed_p99_ms_max"], ten["running_p99_ms_max"]) == (9.0, 30.0)
    assert set(ten) == set(e2e.SPREAD_KEYS)


def test_repeat_must_be_at_least_one(e2e: ModuleType) -> None:
    with pytest.raises(SystemExit):
        e2e.main(["--repeat", "0"])


def test_repeat_is_refused_with_the_race(e2e: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        e2e.main(["--race", "--repeat", "2"])
    assert "--repeat is for the throughput rows" in capsys.readouterr().err
