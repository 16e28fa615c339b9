"""The broker pod's two helpers against real servers: `python -m broker.probe` (the readiness
probe with TLS) against a gRPC health service over plaintext, TLS and mutual TLS; and
`python -m broker.k8s_role_label` as a process, labelling a pod in a Kubernetes API stand-in
(kmock) from a gRPC health service whose WorkloadService status the test changes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import kmock
import pytest
import trustme
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from broker import probe
from broker.k8s_role_label import ACTIVE_SERVICE, LABEL

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVER_NAME = "fb-fedbroker-broker.fedbroker.svc"


class HealthServer:
    """A real gRPC server with the standard health service on 127.0.0.1."""

    def __init__(self, credentials: grpc.ServerCredentials | None = None, port: int = 0) -> None:
        from concurrent import futures

        self.servicer = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, self.server)
        address = f"127.0.0.1:{port}"
        self.port = (
            self.server.add_secure_port(address, credentials)
            if credentials
            else self.server.add_insecure_port(address)
        )
        self.server.start()

    def set(self, service: str, status: int) -> None:
        self.servicer.set(service, status)

    def stop(self) -> None:
        self.server.stop(None).wait()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def _write(path: Path, blob: Any) -> str:
    blob.write_to_path(str(path))
    return str(path)


def test_probe_over_plaintext() -> None:
    server = HealthServer()
    try:
        server.set("", SERVING)
        server.set(ACTIVE_SERVICE, NOT_SERVING)
        address = f"127.0.0.1:{server.port}"
        assert probe.main([address]) == 0
        assert probe.main([address, f"--service={ACTIVE_SERVICE}"]) == 1  # a standby
        assert probe.main([address, "--service=nobody.Knows"]) == 2  # NOT_FOUND
    finally:
        server.stop()
    assert probe.main([address, "--timeout=0.5"]) == 2  # nothing listening


def test_probe_over_tls_and_mutual_tls(ca: trustme.CA, tmp_path: Path) -> None:
    cert = ca.issue_cert(SERVER_NAME)
    ca_file = _write(tmp_path / "ca.crt", ca.cert_pem)
    key_pem = cert.private_key_pem.bytes()
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    tls = HealthServer(grpc.ssl_server_credentials([(key_pem, chain)]))
    mutual = HealthServer(
        grpc.ssl_server_credentials(
            [(key_pem, chain)], root_certificates=ca.cert_pem.bytes(), require_client_auth=True
        )
    )
    client = ca.issue_cert("probe.fedbroker.svc")
    cert_file = _write(tmp_path / "tls.crt", client.cert_chain_pems[0])
    key_file = _write(tmp_path / "tls.key", client.private_key_pem)
    try:
        for server in (tls, mutual):
            server.set("", SERVING)
        tls_args = [f"--ca-file={ca_file}", f"--server-name={SERVER_NAME}"]
        assert probe.main([f"127.0.0.1:{tls.port}", *tls_args]) == 0
        # The certificate names the Service, not 127.0.0.1: without --server-name it fails.
        assert probe.main([f"127.0.0.1:{tls.port}", f"--ca-file={ca_file}", "--timeout=1"]) == 2
        assert probe.main([f"127.0.0.1:{tls.port}", "--timeout=1"]) == 2  # plaintext to TLS
        mtls = [*tls_args, f"--cert-file={cert_file}", f"--key-file={key_file}"]
        assert probe.main([f"127.0.0.1:{mutual.port}", *mtls]) == 0
        assert probe.main([f"127.0.0.1:{mutual.port}", *tls_args, "--timeout=1"]) == 2  # no client cert
    finally:
        tls.stop()
        mutual.stop()


# ---------------------------------------------------------------- the role label


POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "fb-fedbroker-broker-0", "namespace": "fedbroker", "labels": {"app": "x"}},
    "spec": {"containers": [{"name": "broker", "image": "fedbroker"}]},
}


async def _label(emulator: kmock.KubernetesEmulator) -> str | None:
    pod = emulator.objects["v1/pods", "fedbroker", "fb-fedbroker-broker-0"]
    labels: dict[str, str] = pod.get("metadata", {}).get("labels", {})
    assert labels.get("app") == "x"  # a merge patch: the other labels stay
    return labels.get(LABEL)


async def _until(emulator: kmock.KubernetesEmulator, want: str, timeout_s: float = 20.0) -> float:
    started = time.monotonic()
    while (label := await _label(emulator)) != want:
        assert time.monotonic() - started < timeout_s, f"label {label!r}, waited for {want!r}"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer()
    server.set("", SERVING)
    server.set(ACTIVE_SERVICE, NOT_SERVING)
    yield server
    server.stop()


def test_role_label_follows_the_active_role(health_server: HealthServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as api:
            emulator.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
            emulator.objects["v1/pods", "fedbroker", "fb-fedbroker-broker-0"] = POD
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(_kubeconfig(str(api.url).rstrip("/"))))
            env = {
                **os.environ,
                "KUBECONFIG": str(kubeconfig),
                "POD_NAME": "fb-fedbroker-broker-0",
                "POD_NAMESPACE": "fedbroker",
            }
            env.pop("KUBERNETES_SERVICE_HOST", None)
            process = subprocess.Popen(
                [sys.executable, "-m", "broker.k8s_role_label", f"127.0.0.1:{health_server.port}"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                await _until(emulator, "standby")
                health_server.set(ACTIVE_SERVICE, SERVING)  # this broker took the lease
                took = await _until(emulator, "active")
                assert took < 2.0, took  # a watch, not a poll
                health_server.set(ACTIVE_SERVICE, NOT_SERVING)  # stepped down
                await _until(emulator, "standby")
                health_server.set(ACTIVE_SERVICE, SERVING)
                await _until(emulator, "active")
                port = health_server.port
                health_server.stop()  # the broker died: its pod must leave the Service at once
                await _until(emulator, "standby")
                restarted = HealthServer(port=port)
                restarted.set(ACTIVE_SERVICE, SERVING)
                try:
                    await _until(emulator, "active")  # it reconnects by itself
                finally:
                    restarted.stop()
                process.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(process.wait, 10) == 0
            finally:
                if process.poll() is None:
                    process.kill()
                output = process.communicate()[0]
            assert f"labelled {LABEL}=active" in output, output

    asyncio.run(scenario())


def test_role_label_needs_its_pod() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("POD_NAME", "POD_NAMESPACE")}
    done = subprocess.run(
        [sys.executable, "-m", "broker.k8s_role_label", "127.0.0.1:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "POD_NAME" in done.stderr


def _kubeconfig(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "broker", "user": {"token": "test"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "broker"}}],
        "current-context": "kmock",
    }
