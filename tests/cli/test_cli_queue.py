"""`fedbroker queue` through the real entry point against a real broker and agents."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.cli.queue import QUEUE_COLUMNS
from broker.localfed import DEV_TOKENS, EXAMPLES, LocalFederation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    workdir = tmp_path_factory.mktemp("queue")
    config = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    # lion-rock-ai weighs twice harbour-robotics and waits for its home site first
    tenants = {t["name"]: t for t in config["tenants"]}
    tenants["lion-rock-ai"].update(fair_share_weight=2.0, home_site="cyberport")
    config.update(fair_share={"enabled": True, "half_life_h": 24.0}, overflow_after_s=3600)
    path = workdir / "federation.yaml"
    path.write_text(yaml.safe_dump(config))
    federation = LocalFederation(workdir, config=path, agent_overrides={"heartbeat_s": 0.5})
    with federation:
        federation.start()
        yield federation


def cli(fed: LocalFederation, *args: str, who: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(
        FEDBROKER_ENDPOINT=fed.endpoint, FEDBROKER_TOKEN=DEV_TOKENS[who], FEDBROKER_CONFIG="/nonexistent"
    )
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env, timeout=120
    )


def cli_json(fed: LocalFederation, *args: str, who: str) -> Any:
    result = cli(fed, *args, "-o", "json", who=who)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def submit(fed: LocalFederation, tmp_path: Path, name: str, who: str, seconds: float) -> str:
    data = {
        "name": name,
        "backend": "kubernetes",
        "kubernetes": {"image": "registry.example.hk/queue:1"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
        "env": {"FEDBROKER_SIM_SECONDS": str(seconds)},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    workload_id: str = cli_json(fed, "submit", "-f", str(path), who=who)["id"]
    return workload_id


def test_the_queue_in_fair_order_with_shares_rounds_and_reasons(fed: LocalFederation, tmp_path: Path) -> None:
    # harbour-robotics holds 8 GPUs (a long run); then, placement paused, it queues the
    # oldest workload, and lion-rock-ai (holding nothing, weight 2) queues two after it.
    running = submit(fed, tmp_path, "harbour-running", "harbour-robotics", 600)
    fed.wait(lambda: cli_json(fed, "get", running, who="sre")["state"] == "RUNNING", 60, "the long run")
    assert cli_json(fed, "pause", who="sre") == {"paused": True}
    try:
        harbour = submit(fed, tmp_path, "harbour-next", "harbour-robotics", 1)
        lion = [submit(fed, tmp_path, f"lion-{i}", "lion-rock-ai", 1) for i in range(2)]

        everyone = cli_json(fed, "queue", who="sre")
        assert everyone["fair_share"] is True and everyone["total"] == 3
        rows = everyone["workloads"]
        # lion's share is lower, so both its workloads go before harbour's older one
        assert [r["id"] for r in rows] == [*lion, harbour]
        assert [r["position"] for r in rows] == [1, 2, 3]
        by_tenant = {r["tenant"]: r for r in rows}
        assert by_tenant["lion-rock-ai"]["fair_share"] == 0.0
        assert by_tenant["lion-rock-ai"]["weight"] == 2.0
        assert by_tenant["harbour-robotics"]["fair_share"] > 0.0
        assert by_tenant["harbour-robotics"]["weight"] == 1.0
        assert rows[0]["name"] == "lion-0" and rows[0]["gpus"] == 8 and rows[0]["gpu_model"] == "H800"
        # lion's work waits for its home site first (an hour): its round and when it ends
        assert rows[0]["preferred_sites"] == ["cyberport"] and rows[0]["overflow_at"] is not None
        assert by_tenant["harbour-robotics"]["preferred_sites"] == []
        assert by_tenant["harbour-robotics"]["overflow_at"] is None
        assert all("paused" in r["reason"] for r in rows)
        assert "round 1" in rows[0]["reason"]

        # a tenant sees only its own rows, at their place in the whole queue
        mine = cli_json(fed, "queue", who="harbour-robotics")
        assert mine["total"] == 1 and [(r["id"], r["position"]) for r in mine["workloads"]] == [(harbour, 3)]
        denied = cli(fed, "queue", "--tenant", "lion-rock-ai", who="harbour-robotics")
        assert denied.returncode != 0 and "only its own" in denied.stderr
        only = cli_json(fed, "queue", "--tenant", "lion-rock-ai", who="sre")
        assert [r["id"] for r in only["workloads"]] == lion
        assert [r["id"] for r in cli_json(fed, "queue", "--limit", "1", who="sre")["workloads"]] == lion[:1]

        table = cli(fed, "queue", who="sre")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == QUEUE_COLUMNS
        first = next(line for line in lines if lion[0] in line)
        assert "lion-rock-ai" in first and "0.000" in first and "1: cyberport (" in first
        last = next(line for line in lines if harbour in line)
        assert last.split()[0] == "3" and "placement is paused" in last
        short = cli(fed, "queue", "--limit", "2", who="sre").stdout
        assert "(2 of 3 shown: --limit N for more)" in short
    finally:
        cli_json(fed, "resume", who="sre")
    for workload in (*lion, harbour):
        assert cli(fed, "watch", workload, who="sre").returncode == 0
    assert cli(fed, "queue", who="sre").stdout.strip() == "nothing is queued"
    cli(fed, "cancel", running, who="sre")
