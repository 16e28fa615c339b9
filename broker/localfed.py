"""A federation of real processes on loopback: one broker and its site agents.

Used by `fedbroker demo` and by the end-to-end tests, so both exercise
exactly what an operator would run: `fedbroker serve` and `fedbroker agent`
as separate processes talking gRPC over real sockets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from broker.client import Client, ClientError
from broker.endpoints import ACTIVE_SERVICE
from broker.listen import free_port
from broker.sdk.settings import TlsFiles

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# The development tokens whose digests examples/federation.yaml holds (see examples/README.md).
DEV_TOKENS = {
    "cyberport": "dev-agent-cyberport",
    "sandy-ridge": "dev-agent-sandy-ridge",
    "lion-rock-ai": "dev-tenant-lion-rock-ai",
    "harbour-robotics": "dev-tenant-harbour-robotics",
    "sre": "dev-operator-sre",
}


class LocalFederation:
    def __init__(
        self,
        workdir: Path,
        *,
        config: Path = EXAMPLES / "federation.yaml",
        agents: dict[str, Path] | None = None,
        db_url: str | None = None,
        agent_overrides: dict[str, Any] | None = None,
        tokens: dict[str, str] | None = None,
        process_env: dict[str, dict[str, str]] | None = None,
        backends: dict[str, dict[str, Any]] | None = None,
        brokers: int = 1,
        broker_args: list[str] | None = None,
        client_tls: TlsFiles | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.agent_configs = agents or {
            site: EXAMPLES / "agents" / f"{site}.yaml" for site in ("cyberport", "sandy-ridge")
        }
        self.db_url = db_url or f"sqlite:///{workdir / 'broker.db'}"
        self.agent_overrides = agent_overrides or {}
        # Per site, a whole backend section in place of its file's (a real Ray head, a Kubernetes
        # API): `agent_overrides["backend"]` (time_scale, ...) is for the simulated backend only.
        self.backends = backends or {}
        self.tokens = {**DEV_TOKENS, **(tokens or {})}
        # Extra environment per process name ("broker", "agent-<site>"): OTEL_*, metrics ports.
        self.process_env = process_env or {}
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        # "broker", then "broker-2"... on one database: one schedules, the others wait on standby.
        self.broker_endpoints = {"broker": self.endpoint} | {
            f"broker-{n}": f"127.0.0.1:{free_port()}" for n in range(2, brokers + 1)
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        # `serve` flags for every broker (--tls-cert ...), and how clients reach them (TLS files).
        self.broker_args = broker_args or []
        self.client_tls = client_tls

    # -------------------------------------------------------------- processes

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.stop(name)  # one process per name, so close() reaches every process started
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115  (owned by the process)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "broker", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.process_env.get(name, {}), **(env or {})},
            cwd=self.workdir,
        )

    @property
    def endpoints(self) -> str:
        """Every broker's endpoint, as agents and clients take them (`a,b`)."""
        return ",".join(self.broker_endpoints.values())

    def active_broker(self) -> str | None:
        """The running broker that serves writes now (None while a standby takes over)."""
        for name, endpoint in self.broker_endpoints.items():
            if name in self.processes and Client(endpoint, "", tls=self.client_tls).serving(
                service=ACTIVE_SERVICE
            ):
                return name
        return None

    def start_broker(self, name: str = "broker", *, active: bool = True) -> None:
        """Start a broker and wait until it serves: as the active one (it holds the lease; after
        a kill -9 that is once the dead one's lease ran out), or else on standby."""
        endpoint = self.broker_endpoints[name]
        args = ["serve", "--config", str(self.config), "--db", self.db_url, "--listen", endpoint]
        self._spawn(name, [*args, *self.broker_args])
        service = ACTIVE_SERVICE if active else ""
        self.wait(
            lambda: Client(endpoint, "", tls=self.client_tls).serving(service=service), 30, f"{name} to serve"
        )

    def start(self) -> None:
        """The broker, then every site's agent, and wait until every site is healthy."""
        self.start_broker()
        for site in self.agent_configs:
            self.start_agent(site)
        self.wait_healthy()

    def start_agent(self, site: str, token: str | None = None, broker: str | None = None) -> None:
        """Start a site's agent (to `broker`, an `a,b` list: every broker's endpoint unless given)."""
        data = yaml.safe_load(self.agent_configs[site].read_text())
        data["broker"] = broker or self.endpoints
        if site in self.backends:
            data["backend"] = dict(self.backends[site])
        else:
            data.setdefault("backend", {}).update(self.agent_overrides.get("backend", {}))
        data.update({k: v for k, v in self.agent_overrides.items() if k != "backend"})
        path = self.workdir / f"agent-{site}.yaml"
        path.write_text(yaml.safe_dump(data))
        agent_token = token if token is not None else self.tokens[site]
        self._spawn(f"agent-{site}", ["agent", "--config", str(path)], {"FEDBROKER_AGENT_TOKEN": agent_token})

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int | None:
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def close(self) -> None:
        for name in [n for n in self.processes if n != "broker"]:
            self.stop(name)
        self.stop("broker")

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    # -------------------------------------------------------------- helpers

    def client(self, who: str = "sre") -> Client:
        return Client(self.endpoint, self.tokens[who], tls=self.client_tls)

    def wait_healthy(self, sites: list[str] | None = None, timeout: float = 30) -> None:
        wanted = set(sites or self.agent_configs)

        def healthy() -> bool:
            with self.client() as client:
                return wanted <= {s.name for s in client.sites() if s.healthy}

        self.wait(healthy, timeout, f"sites {sorted(wanted)} to be healthy")

    def wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            try:
                if condition():
                    return
            except ClientError:  # the broker may not be up yet
                pass
            time.sleep(0.1)
        raise TimeoutError(f"timed out waiting for {what}\n{self.log_tail('broker')}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
