"""The CLI's answers to bad input, through its real entry point (`python -m broker`), no broker needed.

Each case was a traceback, a wrong exit code or library jargon before (issue: the CLI a
startup and an SRE would choose).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from broker.listen import free_port
from broker.localfed import EXAMPLES

BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"
LATIN1 = "name: caf\u00e9\n".encode("latin-1")


def fedbroker(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    base["FEDBROKER_CONFIG"] = "/nonexistent/fedbroker-config.yaml"  # no user's contexts leak in
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        input=stdin,
        timeout=timeout,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr


@pytest.mark.parametrize("content", [BINARY, LATIN1], ids=["binary", "latin-1"])
@pytest.mark.parametrize("command", ["submit", "config validate", "serve", "agent", "validate"])
def test_a_binary_or_non_utf8_file_exits_2_naming_it(tmp_path: Path, content: bytes, command: str) -> None:
    path = tmp_path / "input.yaml"
    path.write_bytes(content)
    args = {
        "submit": ["submit", "-f", str(path)],
        "config validate": ["config", "validate", str(path)],
        "serve": ["serve", "--config", str(path), "--db", str(tmp_path / "b.db")],
        "agent": ["agent", "--config", str(path), "--token", "x"],
        "validate": ["validate", "-f", str(path)],
    }[command]
    result = fedbroker(*args, env={"FEDBROKER_TOKEN": "t"})
    no_traceback(result)
    assert result.returncode == 2, result.stderr
    assert str(path) in result.stderr
    assert "is a binary file" in result.stderr or "is not UTF-8 text" in result.stderr


def test_serve_with_an_unknown_log_level_is_a_usage_error() -> None:
    result = fedbroker("serve", "--config", str(EXAMPLES / "federation.yaml"), "--log-level", "LOUD")
    no_traceback(result)
    assert result.returncode == 2 and "'LOUD' is not one of" in result.stderr


def test_demo_refuses_a_zero_time_scale_and_says_what_it_means() -> None:
    result = fedbroker("demo", "--time-scale", "0")
    no_traceback(result)
    assert result.returncode == 2 and "--time-scale" in result.stderr
    assert "Real seconds per simulated second" in fedbroker("demo", "--help").stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["list", "--limit", "-1"], "-1 is not in the range"),
        (["watch", "wl-x", "--timeout", "-5"], "-5.0 is not in the range"),
    ],
)
def test_negative_limits_and_timeouts_are_refused(args: list[str], words: str) -> None:
    result = fedbroker(*args, env={"FEDBROKER_TOKEN": "t"})
    assert result.returncode == 2 and words in result.stderr


def test_with_o_json_an_error_is_a_json_object_on_stderr_with_the_same_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("name: x\nbackend: ray\nresources: {gpus_per_replica: true, gpu_model: H800}\n")
    result = fedbroker("submit", "-f", str(path), "-o", "json", env={"FEDBROKER_TOKEN": "t"})
    assert result.returncode == 2 and result.stdout == ""
    error = json.loads(result.stderr)
    assert error["code"] == "INVALID_INPUT" and error["field"] == "resources.gpus_per_replica"
    assert "must be a whole number (got true)" in error["message"]
    usage = fedbroker("list", "--limit", "-1", "-o", "json", env={"FEDBROKER_TOKEN": "t"})
    assert usage.returncode == 2 and json.loads(usage.stderr)["code"] == "USAGE"


def test_a_10_mb_workload_is_refused_at_once_before_sending(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    data = {
        "name": "huge",
        "backend": "ray",
        "ray": {"entrypoint": "python x.py", "runtime_env": {"blob": "x" * (10 * 1024 * 1024)}},
        "resources": {"gpus_per_replica": 1, "gpu_model": "H800"},
    }
    path.write_text(yaml.safe_dump(data))
    started = time.monotonic()
    # An endpoint nobody listens on: the file must be refused before any connection is tried.
    result = fedbroker(
        "submit", "-f", str(path), env={"FEDBROKER_TOKEN": "t", "FEDBROKER_ENDPOINT": "127.0.0.1:9"}
    )
    assert result.returncode == 2 and "at most 1.0 MB is accepted" in result.stderr
    assert time.monotonic() - started < 10

    # Small enough as a file, too large on the wire: the broker's 64 KiB limit, checked here.
    data["ray"]["runtime_env"] = {"blob": "x" * (200 * 1024)}
    path.write_text(yaml.safe_dump(data))
    result = fedbroker(
        "submit", "-f", str(path), env={"FEDBROKER_TOKEN": "t", "FEDBROKER_ENDPOINT": "127.0.0.1:9"}
    )
    assert result.returncode == 2 and "the broker accepts at most 65,536" in result.stderr


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "is empty; expected a workload (name, backend, resources, ...)"),
        ("- just\n- a list\n", "expected a workload (name, backend, resources, ...) as 'key: value' lines"),
        ("name: x\n  bad: indent: here\n", "not valid YAML at line 2, column"),
        ("name: Bad_Name\nbackend: ray\n", "name: must be lowercase letters"),
        ("nmae: x\n", "nmae: is not a known field (did you mean 'name'?)"),
    ],
)
def test_bad_workload_files_are_explained_in_the_users_words(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    result = fedbroker("submit", "-f", str(path), env={"FEDBROKER_TOKEN": "t"})
    no_traceback(result)
    assert result.returncode == 2 and words in result.stderr, result.stderr
    for jargon in ("<unicode string>", "valid dictionary or instance", "should match pattern"):
        assert jargon not in result.stderr


def test_a_missing_token_says_where_to_put_one(tmp_path: Path) -> None:
    result = fedbroker("list")
    assert result.returncode == 2
    assert "--token" in result.stderr and "FEDBROKER_TOKEN" in result.stderr and "token_file" in result.stderr


def test_an_endpoint_url_gets_a_message_not_grpcs() -> None:
    result = fedbroker("list", "--endpoint", "http://127.0.0.1:50051", env={"FEDBROKER_TOKEN": "t"})
    assert result.returncode == 2
    assert "use host:port without http://" in result.stderr and "Misformatted" not in result.stderr


def test_an_unreachable_broker_exits_3_with_a_hint() -> None:
    result = fedbroker("list", "--endpoint", f"127.0.0.1:{free_port()}", env={"FEDBROKER_TOKEN": "t"})
    assert result.returncode == 3, result.stderr
    assert "cannot reach the broker" in result.stderr and "hint:" in result.stderr


def test_serve_accepts_a_db_path(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "state" / "broker.db"
    db.parent.mkdir()
    serve = ["serve", "--config", str(EXAMPLES / "federation.yaml"), "--db", str(db)]
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", *serve, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not db.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert db.exists() and process.poll() is None
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    assert "Could not parse" not in out


def test_a_database_password_never_appears_in_an_error(tmp_path: Path) -> None:
    secret = "s3cret-Pa55"
    for url in (f"postgresql://fed:{secret}@127.0.0.1:{free_port()}/fed", f"postgresql://fed:{secret}@[bad"):
        result = fedbroker(
            "serve", "--config", str(EXAMPLES / "federation.yaml"), "--db", url, "--listen", "127.0.0.1:0"
        )
        no_traceback(result)
        assert result.returncode in (1, 2) and "error:" in result.stderr
        assert secret not in result.stderr and secret not in result.stdout


def test_listen_nonsense_and_a_taken_port_get_different_messages_without_a_grpc_log_line(
    tmp_path: Path,
) -> None:
    serve = ["serve", "--config", str(EXAMPLES / "federation.yaml"), "--db", str(tmp_path / "b.db")]
    nonsense = fedbroker(*serve, "--listen", "nonsense")
    assert nonsense.returncode == 2 and "must be host:port" in nonsense.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = fedbroker(*serve, "--listen", f"127.0.0.1:{port}")
    assert busy.returncode == 1 and "already in use" in busy.stderr
    assert "Failed to add port" not in busy.stderr and "E0000" not in busy.stderr


def test_validate_detects_the_kind_and_answers_json(tmp_path: Path) -> None:
    cases = {
        EXAMPLES / "federation.yaml": "federation",
        EXAMPLES / "agents" / "cyberport.yaml": "agent",
        EXAMPLES / "workloads" / "whisper-cantonese-finetune.yaml": "workload",
    }
    for path, kind in cases.items():
        result = fedbroker("validate", "-f", str(path), "-o", "json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout) | {"summary": ""} == {
            "file": str(path),
            "kind": kind,
            "valid": True,
            "summary": "",
        }
    bad = tmp_path / "agent.yaml"
    bad.write_text("site: cyberport\nbroker: 127.0.0.1:1\nheartbeat_s: 0\nbackend: {kind: simulated}\n")
    result = fedbroker("validate", "-f", str(bad), "-o", "json")
    answer = json.loads(result.stdout)
    assert result.returncode == 2 and answer["kind"] == "agent" and not answer["valid"]
    assert "heartbeat_s: must be > 0" in answer["problems"]
    stdin = fedbroker("validate", "-f", "-", stdin=(EXAMPLES / "federation.yaml").read_text())
    assert stdin.returncode == 0 and "federation: 2 sites" in stdin.stdout


def test_completion_scripts_for_bash_zsh_and_fish() -> None:
    for shell, marker in (("bash", "complete -o"), ("zsh", "#compdef fedbroker"), ("fish", "complete")):
        result = fedbroker("completion", shell)
        assert result.returncode == 0 and marker in result.stdout and "_FEDBROKER_COMPLETE" in result.stdout
    # The script's callback completes commands.
    done = fedbroker(
        env={"_FEDBROKER_COMPLETE": "bash_complete", "COMP_WORDS": "fedbroker des", "COMP_CWORD": "1"}
    )
    assert "describe" in done.stdout


def test_contexts_are_kept_in_the_client_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    env = {"FEDBROKER_CONFIG": str(config)}
    token = tmp_path / "dev.token"
    token.write_text("dev-tenant-lion-rock-ai\n")
    assert (
        fedbroker(
            "context", "set", "dev", "--endpoint", "127.0.0.1:7", "--token-file", str(token), env=env
        ).returncode
        == 0
    )
    assert fedbroker("context", "set", "prod", "--endpoint", "broker.example.hk:443", env=env).returncode == 0
    assert fedbroker("context", "current", env=env).stdout.strip() == "dev"  # the first becomes current
    assert fedbroker("context", "use", "prod", env=env).returncode == 0
    listed = json.loads(fedbroker("context", "list", "-o", "json", env=env).stdout)
    assert listed["current_context"] == "prod" and {c["name"] for c in listed["contexts"]} == {"dev", "prod"}
    typo = fedbroker("context", "use", "prd", env=env)
    assert typo.returncode == 2 and "did you mean 'prod'?" in typo.stderr
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    # A command with --context dev uses its endpoint and its token file (no token on the command line).
    result = fedbroker("list", "--context", "dev", env=env)
    assert result.returncode == 3 and "127.0.0.1:7" in result.stderr


def test_the_agents_broker_address_can_be_overridden_by_flag_or_environment() -> None:
    config = str(EXAMPLES / "agents" / "cyberport.yaml")
    by_flag = fedbroker("agent", "--config", config, "--token", "x", "--broker", "http://broker:1")
    assert by_flag.returncode == 2 and "broker: must be host:port" in by_flag.stderr
    by_env = fedbroker("agent", "--config", config, "--token", "x", env={"FEDBROKER_BROKER": "nonsense"})
    assert by_env.returncode == 2 and "(got 'nonsense')" in by_env.stderr
