"""A real local Ray head for the demo and the tests: `ray start --head --block` in its own process group.

Fake GPUs: Ray counts GPUs as resources, so `--num-gpus` needs no device, and a custom
`accelerator_type:<model>` resource gives them the model the federation prices. Every
port is chosen free and the head gets its own temp dir, so it never meets another Ray
on the machine; stopping it signals only its own process group (never `ray stop`, which
stops every Ray process of the user). The venv's bin comes first on PATH: a job's
`python` is the one `ray start` finds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from broker.listen import free_port

START_TIMEOUT_S = 90.0


def ray_installed() -> bool:
    """The `ray` extra is here: its Python package and the `ray` command beside this interpreter."""
    return importlib.util.find_spec("ray") is not None and (Path(sys.executable).parent / "ray").exists()


@contextlib.contextmanager
def local_ray_head(gpus: int, gpu_model: str, cpus: int = 4) -> Iterator[str]:
    """Start a Ray head with `gpus` fake GPUs of `gpu_model`; yield its dashboard (job) URL; stop it."""
    bindir = Path(sys.executable).parent
    ray = bindir / "ray"
    if not ray.exists():
        raise RuntimeError(f"{ray} not found: install the 'ray' extra (pip install 'fedbroker[ray]')")
    tmp = Path(tempfile.mkdtemp(prefix="fbray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    dashboard = free_port()
    args = [
        str(ray), "start", "--head", "--block", "--disable-usage-stats",
        "--num-gpus", str(gpus), "--num-cpus", str(cpus),
        "--resources", json.dumps({f"accelerator_type:{gpu_model}": 1}),
        "--port", str(free_port()),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true",
        "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
        "--metrics-export-port", str(free_port()), "--ray-client-server-port", str(free_port()),
        "--runtime-env-agent-port", str(free_port()),
        "--min-worker-port", "0", "--max-worker-port", "0",  # random: no clash with another head
        "--temp-dir", str(tmp),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "disabled",
    }
    out = (tmp / "ray-start.log").open("w")
    process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_ready(url, process, tmp / "ray-start.log")
        yield url
    finally:
        _stop(process)
        out.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/api/v0/nodes", timeout=2) as response:
                nodes = json.load(response)["data"]["result"]["result"]
            if any(n["state"] == "ALIVE" and n["resources_total"].get("GPU") for n in nodes):
                return
        time.sleep(0.25)
    raise RuntimeError(f"the Ray head was not ready within {START_TIMEOUT_S:g}s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the head's process group, SIGKILL what is left after a grace."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
