"""Label this broker's pod with its role, so that a Kubernetes Service selects the active broker.

Run beside the broker in its pod (the Helm chart's `role-label` container):
`python -m broker.k8s_role_label [TLS options] HOST:PORT`, with POD_NAME and POD_NAMESPACE set.
It watches the broker's gRPC health service for fedbroker.v1.WorkloadService, which says
SERVING only on the broker holding the lease, and keeps the pod's `fedbroker.io/role` label at
`active` or `standby`; while the broker does not answer, `standby`.

Why a label and not readiness: were only the active broker Ready, a Deployment of two would
never be fully available, so its rolling updates would stall on the old active pod, its
PodDisruptionBudget could never allow evicting it, and replica-mismatch alerts would fire
forever. With the label both brokers are Ready while they reach the database, and the Service
selects `fedbroker.io/role=active` (the pattern of Vault's `vault-active` Service).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from broker.probe import add_tls_options, health_channel

log = logging.getLogger("fedbroker.role_label")
LABEL = "fedbroker.io/role"
ACTIVE_SERVICE = "fedbroker.v1.WorkloadService"  # broker.endpoints.ACTIVE_SERVICE, without its imports
SERVING = health_pb2.HealthCheckResponse.SERVING


class PodLabeller:
    """Patches one pod's role label, retrying until the API server takes it or `stop` is set."""

    def __init__(self, api: Any, pod: str, namespace: str, stop: threading.Event, retry_s: float = 1.0):
        self._api = api  # a kubernetes.client.CoreV1Api
        self._pod = pod
        self._namespace = namespace
        self._stop = stop
        self._retry_s = retry_s
        self.role: str | None = None  # the label as last written

    def set(self, role: str) -> None:
        if role == self.role:
            return
        body = {"metadata": {"labels": {LABEL: role}}}
        while not self._stop.is_set():
            try:
                self._api.patch_namespaced_pod(self._pod, self._namespace, body, _request_timeout=10)
            except Exception as error:  # the API server's errors and the network's alike: retry
                log.warning("cannot label pod %s/%s %s: %s", self._namespace, self._pod, role, error)
                self._stop.wait(self._retry_s)
                continue
            log.info("pod %s/%s labelled %s=%s", self._namespace, self._pod, LABEL, role)
            self.role = role
            return


def follow(
    channel_factory: Callable[[], grpc.Channel],
    labeller: PodLabeller,
    stop: threading.Event,
    retry_s: float = 1.0,
) -> None:
    """Keep the label in step with the broker's health until `stop` is set."""
    current: list[Any] = []  # the open Watch stream, which `stop` cancels

    def cancel_on_stop() -> None:
        stop.wait()
        for stream in list(current):
            stream.cancel()

    threading.Thread(target=cancel_on_stop, name="role-label stop", daemon=True).start()
    while not stop.is_set():
        try:
            with channel_factory() as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                stream = stub.Watch(health_pb2.HealthCheckRequest(service=ACTIVE_SERVICE))
                current[:] = [stream]
                if stop.is_set():
                    stream.cancel()
                for response in stream:
                    labeller.set("active" if response.status == SERVING else "standby")
        except grpc.RpcError as error:
            if not stop.is_set():
                log.info("broker health: %s", error.code().name)  # type: ignore[attr-defined]
        # Not answering (starting, stopping, gone): it must not receive the Service's traffic.
        labeller.set("standby")
        stop.wait(retry_s)


def _kubernetes_api() -> Any:
    from kubernetes import client, config

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config()
    else:  # outside a cluster (tests, a laptop): $KUBECONFIG or ~/.kube/config
        config.load_kube_config()
    return client.CoreV1Api()


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m broker.k8s_role_label", description=__doc__.splitlines()[0]
    )
    parser.add_argument("address", help="HOST:PORT of the broker's gRPC endpoint (in the same pod)")
    add_tls_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    pod, namespace = os.environ.get("POD_NAME"), os.environ.get("POD_NAMESPACE")
    if not pod or not namespace:
        print("error: POD_NAME and POD_NAMESPACE must be set (the downward API)", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    labeller = PodLabeller(_kubernetes_api(), pod, namespace, stop)
    worker = threading.Thread(target=follow, args=(lambda: health_channel(args), labeller, stop), daemon=True)
    worker.start()
    while worker.is_alive() and not stop.is_set():
        stop.wait(1.0)
    # Let the worker close its stream and channel: gRPC aborts an interpreter that exits under
    # a live call.
    worker.join(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
