"""The chart's pods as processes: the migration Job's command, then two brokers and their
role-label containers exactly as the Deployment renders them (ports moved to free ones, mounted
files to a folder), on a real PostgreSQL, against a Kubernetes API stand-in (kmock) holding their
two pods. One pod is labelled active, both pass the readiness probe, and when the active broker
stops the other's pod is labelled active in its place: what the Service follows."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kmock
import yaml
from chart_render import VALUE_SETS, containers, objects, one

from broker import probe
from broker.k8s_role_label import LABEL

PODS = ("fb-fedbroker-broker-a", "fb-fedbroker-broker-b")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _process_spec(
    container: dict[str, Any], ports: dict[str, str], folders: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    def moved(text: str) -> str:
        for old, new in {**ports, **folders}.items():
            text = text.replace(old, new)
        return text.replace("$(POD_IP)", "127.0.0.1").replace("0.0.0.0", "127.0.0.1")

    env = {e["name"]: moved(str(e["value"])) for e in container.get("env", []) if "value" in e}
    # The image's ENTRYPOINT is the `fedbroker` script, which the venv has too.
    command = container.get("command") or [str(Path(sys.executable).parent / "fedbroker")]
    command = [sys.executable if part == "python" else part for part in command]
    return [*command, *(moved(a) for a in container.get("args", []))], env


def _labels(emulator: kmock.KubernetesEmulator) -> dict[str, str | None]:
    return {
        pod: emulator.objects["v1/pods", "fedbroker", pod].get("metadata", {}).get("labels", {}).get(LABEL)
        for pod in PODS
    }


async def _until(emulator: kmock.KubernetesEmulator, check: Any, timeout_s: float = 60.0) -> dict[str, Any]:
    started = time.monotonic()
    while not check(labels := _labels(emulator)):
        assert time.monotonic() - started < timeout_s, labels
        await asyncio.sleep(0.1)
    return labels


async def _probe_passes(port: int, timeout_s: float = 30.0) -> bool:
    """The readiness probe, retried as the kubelet does: a broker still starting (its label
    already says standby, from its health being unreachable) refuses connections at first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await asyncio.to_thread(probe.main, [f"127.0.0.1:{port}"]) == 0:
            return True
        await asyncio.sleep(0.2)
    return False


def test_brokers_run_as_rendered_and_the_label_follows_the_lease(postgres_url: str, tmp_path: Path) -> None:
    objs = objects(VALUE_SETS["broker-only"])
    job = one(objs, "Job", "fb-fedbroker-broker-db-upgrade")
    deployment = one(objs, "Deployment", "fb-fedbroker-broker")
    folder = tmp_path / "federation"
    folder.mkdir()
    (folder / "federation.yaml").write_text(
        one(objs, "ConfigMap", "fb-fedbroker-broker")["data"]["federation.yaml"]
    )
    base_env = {**os.environ, "HOME": str(tmp_path), "FEDBROKER_DB_URL": postgres_url}
    base_env.pop("KUBERNETES_SERVICE_HOST", None)

    # The pre-install Job: `fedbroker db upgrade` with the URL from the Secret.
    args, env = _process_spec(containers(job)[0], {}, {})
    done = subprocess.run(
        args,
        env={**base_env, **env, "FEDBROKER_DB_URL": postgres_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr

    async def scenario() -> None:
        async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as api:
            emulator.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "v1",
                        "kind": "Config",
                        "current-context": "k",
                        "clusters": [{"name": "k", "cluster": {"server": str(api.url).rstrip("/")}}],
                        "users": [{"name": "u", "user": {"token": "t"}}],
                        "contexts": [{"name": "k", "context": {"cluster": "k", "user": "u"}}],
                    }
                )
            )
            processes: dict[str, list[subprocess.Popen[str]]] = {}
            grpc_ports: dict[str, int] = {}
            try:
                for pod in PODS:
                    emulator.objects["v1/pods", "fedbroker", pod] = {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"name": pod, "namespace": "fedbroker"},
                    }
                    grpc_ports[pod] = _free_port()
                    ports = {"50051": str(grpc_ports[pod]), "9464": str(_free_port())}
                    folders = {"/etc/fedbroker/federation": str(folder)}
                    pod_env = {"POD_NAME": pod, "POD_NAMESPACE": "fedbroker", "KUBECONFIG": str(kubeconfig)}
                    processes[pod] = []
                    for container in containers(deployment):  # the broker, then its role-label
                        args, env = _process_spec(container, ports, folders)
                        log = (tmp_path / f"{pod}-{container['name']}.log").open("w")
                        processes[pod].append(
                            subprocess.Popen(
                                args,
                                env={**base_env, **env, **pod_env, "HOME": str(tmp_path)},
                                stdout=log,
                                stderr=subprocess.STDOUT,
                                text=True,
                            )
                        )
                labels = await _until(
                    emulator, lambda ls: sorted(map(str, ls.values())) == ["active", "standby"]
                )
                active = next(pod for pod, role in labels.items() if role == "active")
                standby = next(pod for pod in PODS if pod != active)
                for pod in PODS:  # the readiness probe passes on both: both stay in the Deployment
                    assert await _probe_passes(grpc_ports[pod]), f"{pod} never passed its readiness probe"
                processes[active][0].send_signal(signal.SIGTERM)  # a rollout or a drain stops it
                started = time.monotonic()
                await _until(emulator, lambda ls: ls[standby] == "active" and ls[active] == "standby")
                took = time.monotonic() - started
                print(f"the active label moved in {took:.2f} s")  # shown with -s
                assert took < 20, took  # measured: a clean stop hands the lease over at once
                assert await asyncio.to_thread(processes[active][0].wait, 30) == 0
            finally:
                for group in processes.values():
                    for process in group:
                        if process.poll() is None:
                            process.send_signal(signal.SIGTERM)
                for group in processes.values():
                    for process in group:
                        try:
                            process.wait(20)
                        except subprocess.TimeoutExpired:
                            process.kill()

    try:
        asyncio.run(scenario())
    except AssertionError:
        for log in sorted(tmp_path.glob("*.log")):
            print(f"----- {log.name}\n{log.read_text()[-3000:]}")
        raise
