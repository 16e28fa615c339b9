"""The Python SDK: a thin, typed client over the broker's gRPC API (the CLI is built on it)."""

from __future__ import annotations

import builtins
import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from types import TracebackType
from typing import Any

import grpc
import tenacity
from fedbroker.v1 import (
    operator_service_pb2,
    operator_service_pb2_grpc,
    site_service_pb2,
    site_service_pb2_grpc,
    types_pb2,
    usage_service_pb2,
    usage_service_pb2_grpc,
    workload_service_pb2,
    workload_service_pb2_grpc,
)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace

from broker import endpoints, lifecycle, telemetry
from broker import tls as tls_setup
from broker.api.limits import CHANNEL_OPTIONS
from broker.errors import RETRY_WITHIN_KEY
from broker.sdk.settings import TlsFiles
from broker.spec import WorkloadSpec, spec_to_proto

DEFAULT_ENDPOINT = "127.0.0.1:50051"


class ClientError(Exception):
    """The server refused a call; `code` is the gRPC status, the message is the server's.
    `retry_within_s`: a standby's word on how long retrying it can help (broker/errors.py)."""

    def __init__(self, code: grpc.StatusCode, message: str, retry_within_s: float | None = None) -> None:
        self.code = code
        self.message = message
        self.retry_within_s = retry_within_s
        super().__init__(f"{code.name}: {message}")

    @classmethod
    def of(cls, error: Any) -> ClientError:
        """From a failed call (`grpc.RpcError` or `grpc.aio.AioRpcError`)."""
        within = None
        for key, value in error.trailing_metadata() or ():
            if key == RETRY_WITHIN_KEY:
                with contextlib.suppress(ValueError):
                    within = float(value)
        return cls(error.code(), error.details() or "", within)


def unavailable(error: BaseException) -> bool:
    return isinstance(error, ClientError) and error.code == grpc.StatusCode.UNAVAILABLE


# A submit whose answer did not come (UNAVAILABLE: a broker restarting or killed after its commit,
# a standby taking over, a network cut) is sent again with the same request id: the broker
# answers a repeat with the workload the first one made, so a retry never makes a second one.
# Bounded: about 20 s of tries, enough for a restart or a takeover, then the error is the caller's.
SUBMIT_RETRY: dict[str, Any] = {
    "retry": tenacity.retry_if_exception(unavailable),
    "wait": tenacity.wait_exponential_jitter(multiplier=0.25, max=4.0, jitter=0.25),
    "stop": tenacity.stop_after_attempt(10) | tenacity.stop_after_delay(30),
    "reraise": True,
}


class StandbyWillNotTakeOver(tenacity.stop.stop_base):
    """Stop retrying a standby once its first refusal's `retry_within_s` has passed: a live
    broker held the lease then, and still renews it if that long has gone without a takeover.
    (One per call: it keeps the first refusal's deadline, which later refusals would extend.)"""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        within = error.retry_within_s if isinstance(error, ClientError) else None
        at = retry_state.outcome_timestamp or 0.0
        if self.deadline is None and within is not None:
            self.deadline = at + within
        return self.deadline is not None and at >= self.deadline


def submit_retrying() -> dict[str, Any]:
    """`SUBMIT_RETRY` for one call, bounded also by a standby's word."""
    return {**SUBMIT_RETRY, "stop": SUBMIT_RETRY["stop"] | StandbyWillNotTakeOver()}


def new_request_id() -> str:
    return str(uuid.uuid4())


def usage_request(
    tenant: str = "",
    site: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    by: Iterable[str] = (),
) -> usage_service_pb2.GetUsageRequest:
    """The GetUsage request of a `usage` call (the sync and asyncio clients alike)."""
    request = usage_service_pb2.GetUsageRequest(tenant=tenant, site=site, by=list(by))
    if since is not None:
        request.since.FromDatetime(since)
    if until is not None:
        request.until.FromDatetime(until)
    return request


def _call(rpc: object, request: object, metadata: list[tuple[str, str]], timeout: float | None) -> object:
    try:
        return rpc(request, metadata=metadata, timeout=timeout)  # type: ignore[operator]
    except grpc.RpcError as error:
        raise ClientError.of(error) from None


def _channel(endpoint: str, tls: TlsFiles | None) -> grpc.Channel:
    """Plaintext (loopback, or `insecure`), else TLS verified against the CA file or the system's
    trust store (and a client certificate for mutual TLS): broker/tls.py decides.
    `endpoint` may list a broker and its standbys, `a:50051,b:50051` (broker/endpoints.py)."""
    target, base = endpoints.channel_target(endpoint)
    options: list[tuple[str, Any]] = [*base, *CHANNEL_OPTIONS]
    if not tls_setup.uses_tls(endpoints.split(endpoint), tls):
        return grpc.insecure_channel(target, options=options)
    credentials = tls_setup.channel_credentials(tls)
    options += tls_setup.channel_options(endpoint, tls) if target != endpoint.strip() else []
    return grpc.secure_channel(target, credentials, options=options)


def tracing_wanted() -> bool:
    """Whether SDK calls should make OpenTelemetry gRPC client spans: when spans go somewhere,
    because this process exports them (`fedbroker` commands, from ``OTEL_TRACES_EXPORTER``) or an
    application using the SDK installed a tracer provider of its own. Otherwise no interceptor:
    one per call is a cost for spans that go nowhere.

    Each span's context travels in the call's metadata, so the broker's server span for the RPC
    is its child. The site agents' `Connect` stream does not come through here and is left
    untraced on purpose (as on the server, broker/observability/grpc_tracing.py): it lasts the
    agent's lifetime, and a span of days says nothing."""
    if telemetry.tracing_configured():
        return telemetry.traces_exported()
    provider = trace.get_tracer_provider()  # the API's proxy until someone installs one
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def _traced(channel: grpc.Channel) -> grpc.Channel:
    if not tracing_wanted():
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor, filters
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    traced: grpc.Channel = intercept_channel(
        channel, client_interceptor(filter_=filters.negate(filters.health_check()))
    )
    return traced


class Client:
    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.endpoint = endpoint or os.environ.get("FEDBROKER_ENDPOINT", DEFAULT_ENDPOINT)
        token = token if token is not None else os.environ.get("FEDBROKER_TOKEN", "")
        self._metadata = [("authorization", f"Bearer {token}")] if token else []
        self._timeout = timeout
        self._raw_channel = _channel(self.endpoint, tls)
        self._channel = _traced(self._raw_channel)
        self._workloads = workload_service_pb2_grpc.WorkloadServiceStub(self._channel)
        self._sites = site_service_pb2_grpc.SiteServiceStub(self._channel)
        self._usage = usage_service_pb2_grpc.UsageServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._operator = operator_service_pb2_grpc.OperatorServiceStub(self._channel)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def close(self) -> None:
        self._raw_channel.close()

    def submit(
        self, spec: WorkloadSpec, dry_run: bool = False, request_id: str | None = None
    ) -> workload_service_pb2.SubmitResponse:
        """Submit (or with `dry_run`, only decide); retried on UNAVAILABLE under one request id
        (`request_id`, else a new UUID), so a lost answer never makes two workloads."""
        request = workload_service_pb2.SubmitRequest(
            spec=spec_to_proto(spec), dry_run=dry_run, request_id=request_id or new_request_id()
        )
        for attempt in tenacity.Retrying(**submit_retrying()):
            with attempt:
                response = _call(self._workloads.Submit, request, self._metadata, self._timeout)
        return response  # type: ignore[return-value]

    def get(self, workload_id: str) -> types_pb2.Workload:
        request = workload_service_pb2.GetWorkloadRequest(id=workload_id)
        return _call(self._workloads.Get, request, self._metadata, self._timeout)  # type: ignore[return-value]

    def list(self, states: Iterable[str] = (), limit: int = 0) -> builtins.list[types_pb2.Workload]:
        request = workload_service_pb2.ListWorkloadsRequest(
            states=[lifecycle.to_proto(s) for s in states], limit=limit
        )
        response = _call(self._workloads.List, request, self._metadata, self._timeout)
        return list(response.workloads)  # type: ignore[attr-defined]

    def list_page(
        self,
        states: Iterable[str] = (),
        limit: int = 0,
        *,
        tenant: str = "",
        site: str = "",
        name: str = "",
        since: datetime | None = None,
        page_token: str = "",
    ) -> workload_service_pb2.ListWorkloadsResponse:
        """Filtered, newest first; `event_seq` in the answer is where `watch_all` goes on from;
        `next_page_token` (when not empty) asks for the next page."""
        request = workload_service_pb2.ListWorkloadsRequest(
            states=[lifecycle.to_proto(s) for s in states],
            limit=limit,
            tenant=tenant,
            site=site,
            name=name,
            page_token=page_token,
        )
        if since is not None:
            request.since.FromDatetime(since)
        return _call(self._workloads.List, request, self._metadata, self._timeout)  # type: ignore[return-value]

    def queue(self, tenant: str = "", limit: int = 0) -> workload_service_pb2.QueueResponse:
        """The queue in the order the scheduler will consider it (tenants: their own rows)."""
        request = workload_service_pb2.QueueRequest(tenant=tenant, limit=limit)
        return _call(self._workloads.Queue, request, self._metadata, self._timeout)  # type: ignore[return-value]

    def events(self, workload_id: str) -> builtins.list[workload_service_pb2.WorkloadEvent]:
        """A workload's events so far, oldest first."""
        request = workload_service_pb2.ListEventsRequest(id=workload_id)
        response = _call(self._workloads.ListEvents, request, self._metadata, self._timeout)
        return list(response.events)  # type: ignore[attr-defined]

    def watch_all(
        self, after_seq: int, tenant: str = "", timeout: float | None = None
    ) -> Iterator[workload_service_pb2.WorkloadEvent]:
        """Every visible workload's events after `after_seq`, until the timeout or the caller stops."""
        request = workload_service_pb2.WatchWorkloadsRequest(after_seq=after_seq, tenant=tenant)
        try:
            yield from self._workloads.WatchWorkloads(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as error:
            raise ClientError.of(error) from None

    def cancel(self, workload_id: str) -> types_pb2.Workload:
        request = workload_service_pb2.CancelWorkloadRequest(id=workload_id)
        return _call(self._workloads.Cancel, request, self._metadata, self._timeout)  # type: ignore[return-value]

    def explain(self, workload_id: str) -> types_pb2.Explanation:
        request = workload_service_pb2.ExplainRequest(id=workload_id)
        return _call(self._workloads.Explain, request, self._metadata, self._timeout)  # type: ignore[return-value]

    def watch(
        self, workload_id: str, timeout: float | None = None, after_seq: int = 0
    ) -> Iterator[workload_service_pb2.WorkloadEvent]:
        """State changes from the current one (or after event `after_seq`) until a terminal state
        (or the timeout). One stream: `broker.sdk` reconnects across broker restarts."""
        request = workload_service_pb2.WatchWorkloadRequest(id=workload_id, after_seq=after_seq)
        try:
            yield from self._workloads.Watch(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as error:
            raise ClientError.of(error) from None

    def logs(
        self,
        workload_id: str,
        attempt: int = 0,
        tail: int | None = None,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[workload_service_pb2.LogLines]:
        """An attempt's log lines (attempt 0: the latest), relayed from its site; `follow`: until it ends."""
        request = workload_service_pb2.LogsRequest(id=workload_id, attempt=attempt, tail=tail, follow=follow)
        try:
            yield from self._workloads.Logs(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as error:
            raise ClientError.of(error) from None

    def sites(self) -> builtins.list[site_service_pb2.Site]:
        response = _call(
            self._sites.ListSites, site_service_pb2.ListSitesRequest(), self._metadata, self._timeout
        )
        return list(response.sites)  # type: ignore[attr-defined]

    def usage(
        self,
        tenant: str = "",
        site: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        by: Iterable[str] = (),
    ) -> usage_service_pb2.GetUsageResponse:
        """Settled money summed by `by` (default tenant, program, site), with budgets and caps."""
        request = usage_request(tenant, site, since, until, by)
        return _call(self._usage.GetUsage, request, self._metadata, self._timeout)  # type: ignore[return-value]

    def reload_config(self) -> operator_service_pb2.ReloadConfigResponse:
        """Operators: the broker reads its federation file again (as on SIGHUP)."""
        request = operator_service_pb2.ReloadConfigRequest()
        return _call(self._operator.ReloadConfig, request, self._metadata, self._timeout)  # type: ignore[return-value]

    def set_placement_paused(self, paused: bool) -> bool:
        """Operators: stop (True) or restart (False) placement everywhere; returns the new setting."""
        request = operator_service_pb2.SetPlacementPausedRequest(paused=paused)
        response = _call(self._operator.SetPlacementPaused, request, self._metadata, self._timeout)
        return bool(response.paused)  # type: ignore[attr-defined]

    def pause(self) -> bool:
        return self.set_placement_paused(True)

    def resume(self) -> bool:
        return self.set_placement_paused(False)

    def serving(self, timeout: float = 1.0, service: str = "") -> bool:
        """True when the broker's gRPC health check answers SERVING (for `service`: a standby
        serves "" and the reads, not fedbroker.v1.WorkloadService)."""
        try:
            response = self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
