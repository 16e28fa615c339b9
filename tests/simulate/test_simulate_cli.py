"""`fedbroker simulate` through click's CliRunner: outputs, plot, errors, determinism."""

from __future__ import annotations

import csv
import io
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from simulate_fixtures import HEADER, TINY_TRACE, federation_data, mapping_data, write

from broker.cli import cli
from broker.simulate import INSTALL_HINT, POLICIES

WALL_CLOCK = ("wall_s", "sim_jobs_per_s")  # the only figures that may differ between runs


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "config": write(tmp_path / "federation.yaml", yaml.safe_dump(federation_data())),
        "mapping": write(tmp_path / "mapping.yaml", yaml.safe_dump(mapping_data())),
        "trace": write(tmp_path / "tiny.csv", TINY_TRACE),
    }


def simulate(files: dict[str, Path], *args: str) -> Result:
    base = ["simulate", "--config", str(files["config"]), "--trace", str(files["trace"])]
    if "mapping" in files:
        base += ["--mapping", str(files["mapping"])]
    return CliRunner().invoke(cli, [*base, *args])


def rows_without_wall_clock(stdout: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(stdout)["rows"]
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK} for row in rows]


def test_table_has_one_row_per_policy(files: dict[str, Path]) -> None:
    result = simulate(files)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        f"{files['trace']}: 4 jobs (left out: none); alpha 4 GPUs, beta 8 GPUs; seed 1"
    )
    header = lines[2]
    for column in ("p95 m", "util alpha", "util beta", "moved TB", "subsidy HK$", "sim jobs/s"):
        assert column in header
    body = {line.split()[0]: line for line in lines[4:]}
    assert list(body) == list(POLICIES)
    assert body["home-site"].split()[1:3] == ["3", "1"]  # done, refused: j3 never fits alpha


def test_json_is_one_object_with_rows(files: dict[str, Path]) -> None:
    result = simulate(files, "-o", "json", "--policy", "fedbroker", "--policy", "home-site")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sites"] == {"alpha": 4, "beta": 8}
    assert data["jobs"] == 4 and data["seed"] == 1
    fed, home = data["rows"]
    assert (fed["policy"], home["policy"]) == ("fedbroker", "home-site")
    assert fed["wait_p95_min"] == 70.0 and fed["subsidy_hkd"] == 56.0
    # printed to 6 decimals
    assert fed["utilisation"] == {"alpha": 0.230769, "beta": 0.634615}  # 2x1h / 4x7800s, 11x1h / 8x7800s
    assert home["refused"] == 1 and home["data_moved_tb"] == 0.45


def test_csv_flattens_per_site_columns(files: dict[str, Path]) -> None:
    result = simulate(files, "-o", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["policy"] for r in rows] == list(POLICIES)
    assert {"util_alpha", "util_beta", "placed_alpha", "placed_beta", "wait_p99_min"} <= set(rows[0])
    assert rows[0]["placed_beta"] == "3"


def test_plot_writes_a_png(files: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "sim.png"
    result = simulate(files, "--plot", str(out), "--policy", "fedbroker", "--policy", "home-site")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {out}" in result.stdout


def test_plot_without_matplotlib_names_the_extra(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    out = tmp_path / "sim.png"
    result = simulate(files, "--plot", str(out))
    assert result.exit_code == 1
    assert INSTALL_HINT in result.stderr and "pip install 'fedbroker[simulate]'" in INSTALL_HINT
    assert not out.exists() and result.stdout == ""  # failed before replaying anything


def test_bad_trace_exits_2_naming_line_and_column(files: dict[str, Path]) -> None:
    write(files["trace"], HEADER + "a,0,1,,60,,,,c-sub\nb,0,lots,,60,,,,c-sub\n")
    result = simulate(files)
    assert result.exit_code == 2
    assert f"error: {files['trace']}: line 3, column 3 (gpus): not a number: 'lots'" in result.stderr


def test_unmapped_cluster_exits_2(files: dict[str, Path]) -> None:
    write(files["trace"], HEADER + "a,0,1,,60,,,,c-sub\nb,0,1,,60,,,,elsewhere\n")
    result = simulate(files)
    assert result.exit_code == 2
    assert "line 3: cluster 'elsewhere' is not under the mapping's clusters" in result.stderr


def test_bad_mapping_names_each_field(files: dict[str, Path]) -> None:
    data = mapping_data()
    data["sites"]["gamma"] = [{"count": 1, "gpu_model": "H800", "gpus": 0}]
    data["tenants"]["sub"]["home"] = "nowhere"
    data["tenants"]["scan"]["datasets"] = {"maps": 0.5}
    data["gpu_model"] = "B200"
    write(files["mapping"], yaml.safe_dump(data))
    result = simulate(files)
    assert result.exit_code == 2
    assert "sites.gamma[0].gpus: must be > 0" in result.stderr
    data["sites"]["gamma"][0]["gpus"] = 8
    write(files["mapping"], yaml.safe_dump(data))
    result = simulate(files)
    assert result.exit_code == 2
    for problem in (
        "sites.gamma: unknown site 'gamma'",
        "tenants.sub.home: unknown site 'nowhere'",
        "tenants.scan.datasets.maps: unknown dataset 'maps'",
        "gpu_model: no site prices 'B200'",
    ):
        assert problem in result.stderr


def test_without_mapping_the_default_is_used(files: dict[str, Path]) -> None:
    del files["mapping"]
    result = simulate(files, "-o", "json", "--policy", "fedbroker")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    # 8-GPU nodes of the first site's first model at every site that prices it
    assert set(data["sites"]) == {"alpha", "beta"} and data["sites"]["alpha"] == data["sites"]["beta"]
    assert data["rows"][0]["completed"] == 4


def without_last_column(table: str) -> list[str]:
    return [line.rsplit(None, 1)[0] if line.strip() else line for line in table.splitlines()]


def medium_trace(path: Path) -> Path:
    """300 jobs over two days, in three clusters (one split between tenants)."""
    rng = random.Random(7)
    rows, t = [], 0
    for i in range(300):
        t += rng.randint(0, 900)
        gpus = rng.choice([1, 1, 1, 2, 4, 8, 16, 0.5])
        rows.append(
            f"m{i},{t},{gpus},,{rng.randint(600, 20000)},,,,{rng.choice(['c-sub', 'c-full', 'mix'])}\n"
        )
    return write(path, HEADER + "".join(rows))


def test_same_seed_same_table_other_seed_other_draws(files: dict[str, Path], tmp_path: Path) -> None:
    files["trace"] = medium_trace(tmp_path / "medium.csv")
    data = mapping_data()
    data["clusters"]["mix"] = {"sub": 0.5, "scan": 0.3, "full": 0.2}
    data["tenants"]["sub"]["subsidy_share"] = 0.5
    data["tenants"]["scan"]["datasets"] = {"scans": 0.5}
    write(files["mapping"], yaml.safe_dump(data))
    first = simulate(files, "-o", "json", "--seed", "3")
    again = simulate(files, "-o", "json", "--seed", "3")
    other = simulate(files, "-o", "json", "--seed", "4")
    assert first.exit_code == again.exit_code == other.exit_code == 0, first.output
    assert rows_without_wall_clock(first.stdout) == rows_without_wall_clock(again.stdout)
    assert rows_without_wall_clock(first.stdout) != rows_without_wall_clock(other.stdout)
    # the table too, but for the wall-clock column
    first_table, second_table = (without_last_column(simulate(files, "--seed", "3").stdout) for _ in range(2))
    assert first_table == second_table and len(first_table) == 4 + len(POLICIES)
    fed = json.loads(first.stdout)["rows"][0]
    assert fed["completed"] + fed["refused"] == 300 and fed["refused"] > 0  # 16-GPU gangs never fit
