"""The CLI through its real entry point against a real broker and agents (processes on loopback)."""

from __future__ import annotations

import json
import os
import pty
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.localfed import DEV_TOKENS, EXAMPLES, LocalFederation

TTL_S, GRACE_S = 2, 15


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFederation]:
    workdir = tmp_path_factory.mktemp("cli")
    config = yaml.safe_load((EXAMPLES / "federation.yaml").read_text())
    config.update(heartbeat_ttl_s=TTL_S, requeue_grace_s=GRACE_S)  # a dead site is noticed quickly
    path = workdir / "federation.yaml"
    path.write_text(yaml.safe_dump(config))
    federation = LocalFederation(
        workdir, config=path, agent_overrides={"heartbeat_s": 0.5, "backend": {"time_scale": 0.0001}}
    )
    with federation:
        federation.start()
        yield federation


def cli(
    fed: LocalFederation, *args: str, who: str = "lion-rock-ai", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(
        FEDBROKER_ENDPOINT=fed.endpoint, FEDBROKER_TOKEN=DEV_TOKENS[who], FEDBROKER_CONFIG="/nonexistent"
    )
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def cli_json(fed: LocalFederation, *args: str, who: str = "lion-rock-ai") -> Any:
    result = cli(fed, *args, "-o", "json", who=who)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def workload_file(tmp_path: Path, name: str, seconds: float = 0.5, **changes: Any) -> Path:
    data: dict[str, Any] = {
        "name": name,
        "backend": "kubernetes",
        "kubernetes": {"image": "registry.example.hk/cli:1"},
        "resources": {"gpus_per_replica": 8, "gpu_model": "H800"},
        "env": {"FEDBROKER_SIM_SECONDS": str(seconds)},
    }
    data.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_dry_run_that_would_be_refused_exits_1_with_the_real_submits_message(fed: LocalFederation) -> None:
    path = EXAMPLES / "workloads" / "llm-eval-subsidised.yaml"
    dry = cli(fed, "submit", "-f", str(path), "--dry-run", who="harbour-robotics")
    real = cli(fed, "submit", "-f", str(path), who="harbour-robotics")
    assert dry.returncode == real.returncode == 1
    error = [line for line in dry.stderr.splitlines() if line.startswith("error:")]
    assert error == [line for line in real.stderr.splitlines() if line.startswith("error:")]
    assert error[0].startswith("error: FAILED_PRECONDITION: can never fit any site")
    as_json = cli(fed, "submit", "-f", str(path), "--dry-run", "-o", "json", who="harbour-robotics")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["chosen"] is None
    assert json.loads(as_json.stderr)["code"] == "FAILED_PRECONDITION"


def test_submit_from_stdin_and_find_it_by_prefix_and_name(fed: LocalFederation, tmp_path: Path) -> None:
    text = workload_file(tmp_path, "from-stdin").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(FEDBROKER_ENDPOINT=fed.endpoint, FEDBROKER_TOKEN=DEV_TOKENS["lion-rock-ai"])
    result = subprocess.run(
        [sys.executable, "-m", "broker", "submit", "-f", "-", "-o", "json"],
        input=text,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert cli_json(fed, "get", submitted["id"][:-2])["id"] == submitted["id"]
    assert cli_json(fed, "get", "from-stdin")["id"] == submitted["id"]
    assert cli(fed, "watch", "from-stdin").returncode == 0
    missing = cli(fed, "get", "no-such-thing", "-o", "json")
    assert missing.returncode == 1 and json.loads(missing.stderr)["code"] == "NOT_FOUND"


def test_list_filters_columns_and_formats(fed: LocalFederation, tmp_path: Path) -> None:
    mine = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "listed", sites=["sandy-ridge"])))
    assert cli(fed, "watch", mine["id"]).returncode == 0
    rows = cli_json(fed, "list", "--name", "listed", "--state", "succeeded", "--site", "sandy-ridge")
    assert [r["id"] for r in rows] == [mine["id"]]
    assert cli_json(fed, "list", "--name", "listed", "--state", "QUEUED") == []
    assert cli_json(fed, "list", "--since", "1h", "--name", "listed")[0]["id"] == mine["id"]
    assert cli_json(fed, "list", "--since", "2099-01-01", "--name", "listed") == []
    table = cli(fed, "list", "--name", "listed").stdout.splitlines()[0].split()
    assert table == ["id", "name", "tenant", "state", "site", "gpus", "age", "runtime", "message"]
    wide = cli(fed, "list", "--name", "listed", "-o", "wide").stdout.splitlines()[0].split()
    assert {"attempt", "reason", "nodes", "trace_id"} <= set(wide)
    as_yaml = yaml.safe_load(cli(fed, "list", "--name", "listed", "-o", "yaml").stdout)
    assert as_yaml[0]["id"] == mine["id"]
    assert (
        cli(fed, "list", "--name", "nothing-by-this-name").stdout.strip()
        == "no workloads match these filters"
    )
    # A tenant sees only its own; an operator may filter by tenant.
    theirs = cli(fed, "list", "--tenant", "harbour-robotics", "-o", "json")
    assert theirs.returncode == 1 and "sees only its own" in theirs.stderr
    assert all(
        r["tenant"] == "lion-rock-ai" for r in cli_json(fed, "list", "--tenant", "lion-rock-ai", who="sre")
    )


def test_queued_workloads_show_their_place_and_reason(fed: LocalFederation, tmp_path: Path) -> None:
    fed_wide = cli_json(fed, "pause", who="sre")
    assert fed_wide == {"paused": True}
    try:
        first = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "queued-a")))
        second = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "queued-b")))
        rows = {r["id"]: r for r in cli_json(fed, "list", "--state", "queued")}
        assert rows[first["id"]]["queue_position"] < rows[second["id"]]["queue_position"]
        assert "paused" in rows[second["id"]]["message"]
        line = next(x for x in cli(fed, "list", "--state", "queued").stdout.splitlines() if second["id"] in x)
        assert f"#{rows[second['id']]['queue_position']} waiting" in line
    finally:
        cli_json(fed, "resume", who="sre")
    for workload in (first, second):
        assert cli(fed, "watch", workload["id"]).returncode == 0


def test_explain_shows_the_weighted_parts_that_sum_to_the_score(fed: LocalFederation) -> None:
    path = EXAMPLES / "workloads" / "whisper-cantonese-finetune.yaml"
    explanation = cli_json(fed, "submit", "-f", str(path), "--dry-run")
    for candidate in explanation["candidates"]:
        if candidate["eligible"]:
            terms = candidate["terms"]
            assert sum(terms["parts"].values()) == pytest.approx(candidate["score"], abs=1e-9)
            assert terms["tenant_hkd"] == terms["cost_hkd"]  # the tenant's share, under both names
    text = cli(fed, "submit", "-f", str(path), "--dry-run").stdout
    assert "lower is better" in text and "= locality" in text


def test_describe_tells_the_whole_story(fed: LocalFederation, tmp_path: Path) -> None:
    submitted = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "described", seconds=0.3)))
    assert cli(fed, "watch", submitted["id"]).returncode == 0
    story = cli_json(fed, "describe", "described")
    assert story["id"] == submitted["id"] and story["state"] == "SUCCEEDED"
    assert story["spec"]["name"] == "described" and story["nodes"]
    assert story["started_at"] and story["ended_at"] and story["run_seconds"] > 0
    # Its figure is the list price before subsidy: the money issue's total, not the tenant's share.
    assert story["total_hkd_so_far"] == story["cost_so_far_hkd"] > 0
    assert [a["outcome"] for a in story["attempts"]] == ["SUCCEEDED"]
    assert story["explanation"]["summary"].startswith("finished: SUCCEEDED on ")
    assert [e["state"] for e in story["events"]] == ["PLACED", "RUNNING", "SUCCEEDED"]
    text = cli(fed, "describe", submitted["id"]).stdout
    for heading in ("Name:", "Times:", "Attempts:", "Explanation:", "Events:", "Cost so far:"):
        assert heading in text
    cost = next(line for line in text.splitlines() if line.startswith("Cost so far:"))
    assert (
        f"HK$ {story['total_hkd_so_far']:,.2f} (list price, before subsidy: the total, not the tenant's"
        in cost
    )


def test_explain_of_a_workload_cancelled_while_queued_is_in_the_past_tense(
    fed: LocalFederation, tmp_path: Path
) -> None:
    cli_json(fed, "pause", who="sre")
    try:
        queued = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "never-ran")))
        assert cli_json(fed, "cancel", queued["id"])["state"] == "CANCELLED"
    finally:
        cli_json(fed, "resume", who="sre")
    summary = cli_json(fed, "explain", queued["id"])["summary"]
    assert summary.startswith("finished: CANCELLED while queued"), summary


def test_sites_by_gpu_model_with_prices(fed: LocalFederation) -> None:
    sites = {s["name"]: s for s in cli_json(fed, "sites", who="sre")}
    models = {m["gpu_model"]: m for m in sites["sandy-ridge"]["gpu_models"]}
    assert models["L40S"]["price_hkd_per_gpu_hour"] == 12 and models["L40S"]["gpus_total"] == 16
    assert models["H800"]["gpus_total"] == 32
    text = cli(fed, "sites", who="sre").stdout
    assert "hkd_per_gpu_h" in text and "L40S" in text


def test_list_w_prints_changes_as_they_happen(fed: LocalFederation, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(FEDBROKER_ENDPOINT=fed.endpoint, FEDBROKER_TOKEN=DEV_TOKENS["lion-rock-ai"])
    follower = subprocess.Popen(
        [sys.executable, "-m", "broker", "list", "-w", "--name", "followed", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(2)  # listed, and following
        submitted = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "followed", seconds=0.3)))
        assert cli(fed, "watch", submitted["id"]).returncode == 0
        seen: list[str] = []
        assert follower.stdout is not None
        while "SUCCEEDED" not in seen:
            change = json.loads(follower.stdout.readline())
            if change.get("workload") == submitted["id"]:
                seen.append(change["state"])
        assert seen == ["PLACED", "RUNNING", "SUCCEEDED"]
    finally:
        follower.terminate()
        follower.wait(10)


def test_get_and_explain_say_the_site_is_unreachable_and_when_work_is_requeued(
    fed: LocalFederation, tmp_path: Path
) -> None:
    path = workload_file(tmp_path, "stranded", seconds=120, sites=["cyberport"], max_attempts=2)
    submitted = cli_json(fed, "submit", "-f", str(path))
    fed.wait(lambda: cli_json(fed, "get", submitted["id"])["state"] == "RUNNING", 30, "it to run")
    fed.stop("agent-cyberport", 9)  # the agent dies without a word
    try:
        fed.wait(lambda: cli_json(fed, "get", submitted["id"])["site_unreachable_since"], 30, "unreachable")
        now = cli_json(fed, "get", submitted["id"])
        assert now["state"] == "RUNNING" and now["requeue_at"] > now["site_unreachable_since"]
        text = cli(fed, "get", submitted["id"]).stdout
        assert "warning: site cyberport unreachable since" in text and "unless it returns" in text
        assert "unreachable since" in cli_json(fed, "explain", submitted["id"])["summary"]
        # After the grace the work is requeued, and the dead attempt's GPUs are not counted.
        fed.wait(lambda: cli_json(fed, "get", submitted["id"])["state"] == "QUEUED", 30, "the requeue")
        cyberport = next(s for s in cli_json(fed, "sites", who="sre") if s["name"] == "cyberport")
        assert cyberport["gpus_allocated"] == 0 and cyberport["gpus_reserved"] == 0
    finally:
        fed.start_agent("cyberport")
        fed.wait_healthy()
    cli(fed, "cancel", submitted["id"])


def test_watch_survives_a_broker_restart_and_a_timeout_has_its_own_exit_code(
    fed: LocalFederation, tmp_path: Path
) -> None:
    submitted = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "through-restart", seconds=6)))
    timed_out = cli(fed, "watch", submitted["id"], "--timeout", "0.5")
    assert timed_out.returncode == 124 and "has not finished after 0.5s" in timed_out.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(FEDBROKER_ENDPOINT=fed.endpoint, FEDBROKER_TOKEN=DEV_TOKENS["lion-rock-ai"])
    watcher = subprocess.Popen(
        [sys.executable, "-m", "broker", "watch", submitted["id"], "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert watcher.stdout is not None
    first = watcher.stdout.readline()  # the watch is open: it has printed the first event
    fed.stop("broker")
    fed.start_broker()
    out, err = watcher.communicate(timeout=120)
    assert watcher.returncode == 0, err
    events = [json.loads(line) for line in [first, *out.splitlines()]]
    assert events[-1]["state"] == "SUCCEEDED"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))  # resumed after the last event seen: nothing twice
    # The broker stopped under an open watch without a traceback in its log.
    log = (fed.workdir / "broker.log").read_text()
    assert "CancelledError" not in log and "Traceback" not in log
    fed.wait_healthy()


# ------------------------------------------------------------------ long waits: a status line, sites -w

SPINNER = re.compile(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] (wl-\w+) (\w+)( on [\w-]+)? \((\d+)s\)")


class Terminal:
    """A pseudo-terminal: what a process writes to it, read until every writer has closed it."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def start(self) -> None:
        os.close(self.slave)  # the child holds it now; the master reads EOF (EIO) once it exits
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: no writer is left
                break
            if not chunk:
                break
            self.output += chunk

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not pattern.search(bytes(self.output).decode(errors="replace")):
            tail = bytes(self.output[-2000:])
            assert time.monotonic() < deadline, f"not on the terminal: {pattern.pattern}\n{tail!r}"
            time.sleep(0.1)

    def text(self) -> str:
        self._reader.join(30)
        os.close(self.master)
        return self.output.decode(errors="replace")


def cli_env(fed: LocalFederation, who: str = "lion-rock-ai") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    env.update(
        FEDBROKER_ENDPOINT=fed.endpoint, FEDBROKER_TOKEN=DEV_TOKENS[who], FEDBROKER_CONFIG="/nonexistent"
    )
    return env


def test_watch_shows_a_status_line_on_a_terminal_and_nothing_when_output_is_not_one(
    fed: LocalFederation, tmp_path: Path
) -> None:
    command = [sys.executable, "-m", "broker", "watch"]
    both, stderr_only = Terminal(), Terminal()
    cli_json(fed, "pause", who="sre")  # it waits in the queue until every watcher is waiting for it
    try:
        submitted = cli_json(fed, "submit", "-f", str(workload_file(tmp_path, "spun", seconds=3)))
        on_a_terminal = subprocess.Popen(
            [*command, submitted["id"]], stdout=both.slave, stderr=both.slave, env=cli_env(fed)
        )
        # stderr is a terminal but stdout a pipe (`watch ID | grep ...`): a spinner would land on
        # the terminal between the piped lines, so there is none.
        piped_out = subprocess.Popen(
            [*command, submitted["id"]],
            stdout=subprocess.PIPE,
            stderr=stderr_only.slave,
            text=True,
            env=cli_env(fed),
        )
        in_a_log = subprocess.Popen(  # both piped, as in CI
            [*command, submitted["id"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(fed),
        )
        both.start()
        stderr_only.start()
        # Waiting for it to leave the queue, a status line says so (all three watchers have started).
        both.wait_for(re.compile(rf"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] {submitted['id']} QUEUED \(2s\)"), 60)
    finally:
        cli_json(fed, "resume", who="sre")
    log_out, log_err = in_a_log.communicate(timeout=60)
    assert on_a_terminal.wait(60) == 0 and piped_out.wait(60) == 0 and in_a_log.returncode == 0

    screen = both.text()
    spins = SPINNER.findall(screen)
    assert spins, screen
    assert {workload for workload, *_ in spins} == {submitted["id"]}
    assert any(state == "RUNNING" and site for _, state, site, _ in spins), spins
    assert "\r\x1b[K" in screen  # redrawn in place
    # The events still print, as lines of their own.
    assert re.search(r"SUCCEEDED +attempt 1 on [\w-]+ \[exit\]: exit code 0\r\n", screen), screen
    assert "Traceback" not in screen

    assert stderr_only.text() == ""
    out, _ = piped_out.communicate()
    for quiet in (out, log_out, log_err):
        assert not SPINNER.search(quiet) and "\x1b" not in quiet and "\r" not in quiet, quiet
    assert [line.split()[1] for line in log_out.splitlines()] == ["QUEUED", "PLACED", "RUNNING", "SUCCEEDED"]
    assert out == log_out


def test_sites_watch_prints_an_update_when_a_site_changes_and_ctrl_c_ends_it(fed: LocalFederation) -> None:
    follower = subprocess.Popen(
        [sys.executable, "-m", "broker", "sites", "--watch", "--interval", "0.3", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(fed, "sre"),
    )
    updates: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            updates.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        first = {s["name"]: s for s in json.loads(updates.get(timeout=30))}
        assert first["cyberport"]["healthy"] and first["sandy-ridge"]["healthy"]
        # Nothing changes: no update, though each look finds an older heartbeat.
        with pytest.raises(queue.Empty):
            updates.get(timeout=1.5)
        fed.stop("agent-cyberport")
        deadline = time.monotonic() + 30
        while True:
            now = {s["name"]: s for s in json.loads(updates.get(timeout=deadline - time.monotonic()))}
            if not now["cyberport"]["healthy"]:
                break
        assert now["sandy-ridge"]["healthy"]
        follower.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = follower.communicate(timeout=30)
        assert follower.returncode == 130 and err.strip() == "interrupted", err
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        fed.start_agent("cyberport")
        fed.wait_healthy()
