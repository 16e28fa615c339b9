"""`fedbroker agent`: exit codes and messages. Config errors in-process (click's runner); the
signal and refusal cases run the real command as a subprocess against the in-test gRPC broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from site_agents.cli import agent_command

from .harness import TOKEN, FakeBroker, serving

CONFIG = """\
site: cyberport
broker: 127.0.0.1:{port}
heartbeat_s: 0.1
token_file: token
backend:
  kind: {kind}
"""
SIMULATED = """\
  node_groups:
    - {count: 1, name_prefix: cp-h800, gpu_model: H800, gpus: 8, gpu_memory_gb: 80,
       cpus: 128, memory_gb: 1024}
"""


def write_config(
    tmp_path: Path, port: int = 50051, kind: str = "simulated", token: str | None = TOKEN
) -> Path:
    path = tmp_path / "agent.yaml"
    text = CONFIG.format(port=port, kind=kind)
    if kind == "simulated":
        text += SIMULATED
    elif kind == "ray":
        text += "  address: http://127.0.0.1:8265\n"
    path.write_text(text)
    if token is not None:
        (tmp_path / "token").write_text(token)
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(agent_command, list(args), env={"FEDBROKER_AGENT_TOKEN": None})
    return result.exit_code, result.stderr


def test_an_invalid_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace("gpus: 8", "gpus: 0"))
    code, stderr = invoke("--config", str(path))
    assert code == 2
    assert f"error: {path}: backend.node_groups[0].gpus: must be > 0" in stderr


def test_a_missing_config_file_exits_2_naming_it(tmp_path: Path) -> None:
    code, stderr = invoke("--config", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "nope.yaml: cannot read" in stderr


def test_no_token_exits_2(tmp_path: Path) -> None:
    code, stderr = invoke("--config", str(write_config(tmp_path, token=None)))
    assert code == 2
    assert "token_file" in stderr and "cannot read" in stderr


@pytest.mark.parametrize(("kind", "extra", "package"), [("ray", "ray", "ray[default]")])
def test_a_backend_whose_package_is_missing_names_the_extra(
    tmp_path: Path, kind: str, extra: str, package: str
) -> None:
    # The real command, in a Python where the client library cannot be imported.
    hide = f"import sys; sys.modules[{package.split('[')[0]!r}] = None; "
    run = "from site_agents.cli import agent_command; agent_command()"
    result = subprocess.run(
        [sys.executable, "-c", hide + run, "--config", str(write_config(tmp_path, kind=kind))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: the {kind} backend needs the {package!r} Python package: pip install 'fedbroker[{extra}]'"
    )


async def start_agent(config: Path, *args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k != "FEDBROKER_AGENT_TOKEN"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "site_agents.cli",
        "--config",
        str(config),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def test_sigterm_stops_the_agent_with_exit_0(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, bytes]:
        async with serving() as server:
            process = await start_agent(write_config(tmp_path, server.port))
            try:
                await server.broker.wait_for(lambda: server.broker.of("inventory"), timeout=15)
            finally:
                process.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(process.communicate(), 10)
            return process.returncode, stderr

    code, stderr = asyncio.run(main())
    assert code == 0, stderr.decode()
    assert b"connected to broker test-broker" in stderr


def test_a_wrong_token_exits_1_with_the_brokers_message(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, bytes, int]:
        broker = FakeBroker()
        async with serving(broker) as server:
            config = write_config(tmp_path, server.port)
            process = await start_agent(config, "--token", "not-the-token")  # the flag wins over token_file
            _, stderr = await asyncio.wait_for(process.communicate(), 15)
            return process.returncode, stderr, broker.connections

    code, stderr, connections = asyncio.run(main())
    assert code == 1, stderr.decode()
    assert b"the broker refused this agent (UNAUTHENTICATED): unknown agent token" in stderr
    # Refused, never retried. A refusal sent while the agent's Hello is still being written can
    # reach it as gRPC core's "INTERNAL: Internal error from Core" instead (the server's status is
    # lost in that race); such an attempt is retried like any broken stream, and a retry refused.
    raced = stderr.count(b"INTERNAL: Internal error from Core")
    assert connections == 1 + raced, stderr.decode()
