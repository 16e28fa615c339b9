"""The engine process's front processes: started with it, restarted if one dies, stopped with it."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from broker.listen import free_port, parse_listen
from broker.relay import protocol
from broker.tls import ServerTls

log = logging.getLogger("fedbroker.fronts")

READY_TIMEOUT_S = 30.0
RESTART_S = 1.0  # a front that died is started again after this long
WATCH_S = 0.2  # how often each front's liveness is checked
STOP_GRACE_S = 5.0


class FrontsError(Exception):
    """A front could not start (its own words)."""


class Fronts:
    def __init__(
        self,
        count: int,
        listen: str,
        tls: ServerTls | None,
        *,
        log_level: str = "INFO",
        log_format: str = "text",
    ) -> None:
        self.count = count
        host, port = parse_listen(listen)
        self.port = port or free_port(host)
        self.listen = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self._dir = Path(tempfile.mkdtemp(prefix="fedbroker-engine-"))  # 0700: this user's only
        self.upstream = f"unix:{self._dir / protocol.SOCKET_NAME}"
        self._args = ["--listen", self.listen, "--upstream", self.upstream, "--parent-pid", str(os.getpid())]
        self._args += ["--log-level", log_level]
        self._args += ["--log-format", log_format]
        if tls is not None:
            self._args += ["--tls-cert", str(tls.cert_file), "--tls-key", str(tls.key_file)]
            if tls.client_ca_file is not None:
                self._args += ["--tls-client-ca", str(tls.client_ca_file)]
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * count
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        """Every front serving, or FrontsError with the first one's reason (the rest stopped)."""
        try:
            for index in range(self.count):
                await self._start(index)
        except FrontsError:
            await self.stop()
            raise
        self._watchers = [asyncio.create_task(self._watch(i), name=f"front {i}") for i in range(self.count)]

    async def _start(self, index: int) -> None:
        # subprocess, not the event loop's (uvloop forks): with close_fds=False Python starts it
        # with posix_spawn, so gRPC's fork handlers stay out of it and out of the log. Python's
        # own descriptors are not inheritable (PEP 446): the front gets stdin, stdout and stderr.
        process = subprocess.Popen(
            [sys.executable, "-m", "broker.relay.front", *self._args], stdout=subprocess.PIPE, close_fds=False
        )
        self._processes[index] = process
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), READY_TIMEOUT_S)
        except TimeoutError:
            line = b"error: not ready in time"
        process.stdout.close()  # the ready line is all it writes there
        text = line.decode(errors="replace").strip()
        if not text.startswith("ready "):
            process.kill()
            await asyncio.to_thread(process.wait)
            raise FrontsError(
                text.removeprefix("error: ") or f"front {index} exited with {process.returncode}"
            )

    async def _watch(self, index: int) -> None:
        while True:
            process = self._processes[index]
            assert process is not None
            # Polled: a thread blocked in wait() per front would hold the loop's default
            # executor, which the lease and the reads need.
            while (code := process.poll()) is None:
                await asyncio.sleep(WATCH_S)
            if self._stopping:
                return
            log.error("front process %d (pid %d) exited with %s; starting another", index, process.pid, code)
            await asyncio.sleep(RESTART_S)
            try:
                await self._start(index)
            except FrontsError as error:
                log.error("front process %d did not start: %s", index, error)

    def hangup(self) -> None:
        """SIGHUP to each front: it reads its TLS certificate again."""
        for process in self._processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGHUP)

    async def stop(self) -> None:
        """Each front ends its calls (a grace period), then exits; the socket's folder goes."""
        self._stopping = True
        for watcher in self._watchers:
            watcher.cancel()
        running = [p for p in self._processes if p is not None and p.poll() is None]
        for process in running:
            process.terminate()
        for process in running:
            try:
                await asyncio.to_thread(process.wait, STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        shutil.rmtree(self._dir, ignore_errors=True)
