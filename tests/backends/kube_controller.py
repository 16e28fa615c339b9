"""A tiny Job controller for the kmock stand-in: it plays the Job controller, the scheduler and the kubelet.

For each Job in the namespace it creates one pod per replica, binds each to a
node with free `nvidia.com/gpu` (else marks it Unschedulable), runs it, and
writes Job and Pod status through the API as the tests script through the pod
template's env, like the simulated backend:

- FEDBROKER_SIM_SECONDS: how long the pods run (default 0);
- FEDBROKER_SIM_EXIT_CODE: their exit code (default 0);
- FEDBROKER_TEST_OUTCOME: `ImagePullBackOff` or `OOMKilled` instead of running normally.

A deleted Job takes its pods with it (what foreground propagation does). Each
pod logs "hello from <FEDBROKER_WORKLOAD_ID>" and its exit code, served on the
pods' `log` subresource (with tailLines and follow).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kmock
import kubernetes_validate

RUN_AFTER_S = 0.2  # from bound to Running: an image pull, a container start
STEP_S = 0.05


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Run:
    name: str
    replicas: int
    gpus: int
    env: dict[str, str]
    template: dict[str, Any]
    pods: list[str] = field(default_factory=list)
    bound: dict[str, str] = field(default_factory=dict)  # pod -> node
    started: float | None = None
    done: bool = False
    marked_unschedulable: bool = False


class JobController:
    def __init__(self, emulator: kmock.KubernetesEmulator, namespace: str) -> None:
        self.emulator = emulator
        self.namespace = namespace
        self.invalid: list[str] = []
        self.creations: dict[str, int] = {}  # Job name -> how many distinct Jobs of that name were seen
        self.logs: dict[str, list[str]] = {}  # pod -> lines
        self._runs: dict[str, _Run] = {}
        self._ended: dict[str, asyncio.Event] = {}
        emulator[kmock.resource("v1/pods"), kmock.subresource("log")] << self._serve_log

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[JobController]:
        task = asyncio.create_task(self._loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await self._step(asyncio.get_running_loop().time())
            await asyncio.sleep(STEP_S)

    def _objects(self, resource: str) -> dict[str, dict[str, Any]]:
        want = kmock.resource(resource)
        return {
            name: obj.raw
            for (res, ns, name), obj in list(self.emulator.objects.items())
            if res == want and ns in (self.namespace, None) and not obj.deleted
        }

    async def _step(self, now: float) -> None:
        jobs = self._objects("batch/v1/jobs")
        for name in list(self._runs):
            if name not in jobs:  # deleted: foreground propagation removes its pods
                run = self._runs.pop(name)
                for pod in run.pods:
                    with contextlib.suppress(Exception):
                        await self.emulator.delete(f"/api/v1/namespaces/{self.namespace}/pods/{pod}")
                    self._end_log(pod)
        for name, job in jobs.items():
            if name not in self._runs:
                self._adopt(name, job)
                await self._create_pods(self._runs[name])
        for run in self._runs.values():
            if not run.done:
                await self._advance(run, now)

    def _adopt(self, name: str, job: dict[str, Any]) -> None:
        try:
            kubernetes_validate.validate(job, kubernetes_validate.utils.latest_version(), strict=True)
        except Exception as error:  # every manifest the backend sends must be schema-valid
            self.invalid.append(f"Job {name}: {error}")
        spec = job.get("spec") or {}
        template = (spec.get("template") or {}).get("spec") or {}
        container = (template.get("containers") or [{}])[0]
        gpus = int(((container.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0))
        env = {e["name"]: e.get("value", "") for e in container.get("env") or []}
        self.creations[name] = self.creations.get(name, 0) + 1
        self._runs[name] = _Run(
            name, int(spec.get("parallelism") or 1), gpus, env, spec.get("template") or {}
        )

    async def _create_pods(self, run: _Run) -> None:
        for index in range(run.replicas):
            pod = f"{run.name}-{index}-x7k2p"
            labels = {
                **((run.template.get("metadata") or {}).get("labels") or {}),
                "batch.kubernetes.io/job-name": run.name,
                "batch.kubernetes.io/job-completion-index": str(index),
            }
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "namespace": self.namespace, "labels": labels},
                "spec": dict(run.template.get("spec") or {}),
                "status": {"phase": "Pending"},
            }
            await self.emulator.post(f"/api/v1/namespaces/{self.namespace}/pods", json=body)
            run.pods.append(pod)
            self.logs[pod] = []
            self._ended[pod] = asyncio.Event()

    def _free_gpus(self) -> dict[str, int]:
        free: dict[str, int] = {}
        for name, node in self._objects("v1/nodes").items():
            free[name] = int(((node.get("status") or {}).get("allocatable") or {}).get("nvidia.com/gpu", 0))
        for pod in self._objects("v1/pods").values():
            node = (pod.get("spec") or {}).get("nodeName")
            if node in free and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                for c in (pod.get("spec") or {}).get("containers") or []:
                    free[node] -= int(
                        ((c.get("resources") or {}).get("limits") or {}).get("nvidia.com/gpu", 0)
                    )
        return free

    async def _advance(self, run: _Run, now: float) -> None:
        if len(run.bound) < len(run.pods):
            await self._schedule(run, now)
            return
        assert run.started is not None
        outcome = run.env.get("FEDBROKER_TEST_OUTCOME", "")
        seconds = float(run.env.get("FEDBROKER_SIM_SECONDS", "0"))
        code = int(run.env.get("FEDBROKER_SIM_EXIT_CODE", "0"))
        if now - run.started < RUN_AFTER_S:
            return
        if outcome == "ImagePullBackOff":
            waiting = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}
            await self._pods_status(run, "Pending", waiting)
            run.done = True  # it would stay so forever
            return
        if not any(line.startswith("hello") for pod in run.pods for line in self.logs[pod]):
            for pod in run.pods:
                self.logs[pod].append(f"hello from {run.env.get('FEDBROKER_WORKLOAD_ID', '?')}")
            await self._pods_status(run, "Running", {"running": {"startedAt": _now()}})
            await self._job_status(run, {"active": run.replicas, "ready": run.replicas, "startTime": _now()})
        if now - run.started < RUN_AFTER_S + seconds:
            return
        if outcome == "OOMKilled":
            code = 137
        terminated = {
            "terminated": {"exitCode": code, "reason": outcome or ("Completed" if code == 0 else "Error")}
        }
        for pod in run.pods:
            self.logs[pod].append(f"exit code {code}")
            self._end_log(pod)
        await self._pods_status(run, "Succeeded" if code == 0 else "Failed", terminated)
        kind, reason = ("Complete", "CompletionsReached") if code == 0 else ("Failed", "BackoffLimitExceeded")
        condition = {"type": kind, "status": "True", "reason": reason, "lastTransitionTime": _now()}
        counts = {"succeeded": run.replicas} if code == 0 else {"failed": 1}
        await self._job_status(run, {"active": 0, "ready": 0, "conditions": [condition], **counts})
        run.done = True

    async def _schedule(self, run: _Run, now: float) -> None:
        free = self._free_gpus()
        plan: dict[str, str] = {}
        for pod in run.pods:
            node = next((n for n in sorted(free) if free[n] >= run.gpus), None)
            if node is None:
                break
            free[node] -= run.gpus
            plan[pod] = node
        if len(plan) < len(run.pods):
            if run.marked_unschedulable:
                return
            run.marked_unschedulable = True
            message = f"0/{len(free)} nodes are available: {len(free)} Insufficient nvidia.com/gpu."
            condition = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
            for pod in run.pods:
                await self._pod_patch(pod, {"status": {"phase": "Pending", "conditions": [condition]}})
            return
        for pod, node in plan.items():
            scheduled = {"type": "PodScheduled", "status": "True"}
            await self._pod_patch(pod, {"spec": {"nodeName": node}, "status": {"conditions": [scheduled]}})
        run.bound = plan
        run.started = now

    async def _pods_status(self, run: _Run, phase: str, state: dict[str, Any]) -> None:
        for pod in run.pods:
            status = {
                "phase": phase,
                "containerStatuses": [{"name": "workload", "image": "x", "state": state}],
            }
            await self._pod_patch(pod, {"status": status})

    async def _pod_patch(self, pod: str, patch: dict[str, Any]) -> None:
        await self.emulator.patch(f"/api/v1/namespaces/{self.namespace}/pods/{pod}", json=patch)

    async def _job_status(self, run: _Run, status: dict[str, Any]) -> None:
        await self.emulator.patch(
            f"/apis/batch/v1/namespaces/{self.namespace}/jobs/{run.name}", json={"status": status}
        )

    def _end_log(self, pod: str) -> None:
        if pod in self._ended:
            self._ended[pod].set()

    async def _serve_log(self, request: kmock.Request) -> Any:
        pod = str(request.name)
        lines = self.logs.get(pod)
        if lines is None:
            raise kmock.KubernetesNotFoundError()
        tail = request.params.get("tailLines")
        shown = lines[-int(tail) :] if tail else list(lines)
        if request.params.get("follow") != "true":
            return "".join(f"{line}\n" for line in shown).encode()
        return self._follow(pod, lines, len(lines) - len(shown))

    async def _follow(self, pod: str, lines: list[str], start: int) -> AsyncIterator[bytes]:
        sent = start
        while True:
            while sent < len(lines):
                yield f"{lines[sent]}\n".encode()
                sent += 1
            if self._ended[pod].is_set() and sent >= len(lines):
                return
            await asyncio.sleep(STEP_S)
