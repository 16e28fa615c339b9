"""`AsyncClient`: the SDK's methods for asyncio code (a notebook's event loop, a service).

The same calls and results as `broker.sdk.client.Client`, over grpc.aio.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import tenacity
from fedbroker.v1 import (
    operator_service_pb2,
    operator_service_pb2_grpc,
    site_service_pb2,
    site_service_pb2_grpc,
    usage_service_pb2_grpc,
    workload_service_pb2,
    workload_service_pb2_grpc,
)

from broker import endpoints, lifecycle
from broker import tls as tls_setup
from broker.api.limits import CHANNEL_OPTIONS
from broker.client import ClientError, new_request_id, submit_retrying, tracing_wanted, usage_request
from broker.sdk import workloads
from broker.sdk.client import RECONNECT_FOR_S, backoff, since_time
from broker.sdk.errors import WaitTimeout, broker_away, typed
from broker.sdk.models import Event, Explanation, Quote, Site, State, Usage, WorkloadStatus
from broker.sdk.settings import Settings, TlsFiles, resolve
from broker.spec import WorkloadSpec, spec_to_proto

T = TypeVar("T")


def _channel(endpoint: str, tls: TlsFiles | None) -> grpc.aio.Channel:
    """As broker/client.py's channel: an endpoint list, plaintext or TLS by broker/tls.py's rules."""
    interceptors = _client_spans() if tracing_wanted() else None
    target, base = endpoints.channel_target(endpoint)
    options: list[tuple[str, Any]] = [*base, *CHANNEL_OPTIONS]
    if not tls_setup.uses_tls(endpoints.split(endpoint), tls):
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    credentials = tls_setup.channel_credentials(tls)
    options += tls_setup.channel_options(endpoint, tls) if target != endpoint.strip() else []
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def _client_spans() -> list[grpc.aio.ClientInterceptor]:
    from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

    spans: list[grpc.aio.ClientInterceptor] = aio_client_interceptors(
        filter_=filters.negate(filters.health_check())
    )
    return spans


class AsyncClient:
    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        context: str | None = None,
        timeout: float = 30.0,
        settings: Settings | None = None,
    ) -> None:
        self.settings = settings or resolve(endpoint=endpoint, token=token, context=context)
        self._metadata = [("authorization", f"Bearer {self.settings.token}")] if self.settings.token else []
        self._timeout = timeout
        self._channel = _channel(self.settings.endpoint, self.settings.tls)
        self._workloads = workload_service_pb2_grpc.WorkloadServiceStub(self._channel)
        self._sites = site_service_pb2_grpc.SiteServiceStub(self._channel)
        self._usage = usage_service_pb2_grpc.UsageServiceStub(self._channel)
        self._operator = operator_service_pb2_grpc.OperatorServiceStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise typed(ClientError.of(error)) from None

    def _unary(self, rpc: Any, request: Any) -> Awaitable[Any]:
        return self._call(rpc(request, metadata=self._metadata, timeout=self._timeout))

    async def submit(
        self, workload: WorkloadSpec | dict[str, Any] | str | Path, *, request_id: str | None = None
    ) -> WorkloadStatus:
        """As `Client.submit`: retried while the broker is unavailable, under one request id."""
        request = workload_service_pb2.SubmitRequest(
            spec=spec_to_proto(workloads.as_spec(workload)), request_id=request_id or new_request_id()
        )
        async for attempt in tenacity.AsyncRetrying(**submit_retrying()):
            with attempt:
                response = await self._call(
                    self._workloads.Submit(request, metadata=self._metadata, timeout=self._timeout)
                )
        return WorkloadStatus.from_proto(response.workload)

    async def dry_run(self, workload: WorkloadSpec | dict[str, Any] | str | Path) -> Explanation:
        spec = spec_to_proto(workloads.as_spec(workload))
        request = workload_service_pb2.SubmitRequest(spec=spec, dry_run=True)
        return Explanation.from_proto((await self._unary(self._workloads.Submit, request)).explanation)

    async def get(self, ref: str) -> WorkloadStatus:
        request = workload_service_pb2.GetWorkloadRequest(id=ref)
        return WorkloadStatus.from_proto(await self._unary(self._workloads.Get, request))

    async def list(
        self,
        *,
        state: str | State | Iterable[str | State] = (),
        tenant: str = "",
        site: str = "",
        name: str = "",
        since: datetime | timedelta | None = None,
        limit: int = 0,
    ) -> builtins.list[WorkloadStatus]:
        states = [state] if isinstance(state, str) else list(state)
        request = workload_service_pb2.ListWorkloadsRequest(
            states=[lifecycle.to_proto(str(s).upper()) for s in states],
            limit=limit,
            tenant=tenant,
            site=site,
            name=name,
        )
        when = since_time(since)
        if when is not None:
            request.since.FromDatetime(when)
        response = await self._unary(self._workloads.List, request)
        return [WorkloadStatus.from_proto(w) for w in response.workloads]

    async def cancel(self, ref: str) -> WorkloadStatus:
        request = workload_service_pb2.CancelWorkloadRequest(id=ref)
        return WorkloadStatus.from_proto(await self._unary(self._workloads.Cancel, request))

    async def explain(self, ref: str) -> Explanation:
        request = workload_service_pb2.ExplainRequest(id=ref)
        return Explanation.from_proto(await self._unary(self._workloads.Explain, request))

    async def events(self, ref: str) -> builtins.list[Event]:
        request = workload_service_pb2.ListEventsRequest(id=ref)
        return [Event.from_proto(e) for e in (await self._unary(self._workloads.ListEvents, request)).events]

    async def watch(
        self, ref: str, *, timeout: float | None = None, reconnect_for: float = RECONNECT_FOR_S
    ) -> AsyncIterator[Event]:
        """As `Client.watch`: reconnects across broker restarts and resumes after the last event."""
        deadline = None if timeout is None else time.monotonic() + timeout
        workload_id = await self._resolve_when_up(ref, reconnect_for)
        last_seq, heard = 0, time.monotonic()
        delays = backoff()
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(f"{workload_id} has not finished after {timeout:g}s")
            request = workload_service_pb2.WatchWorkloadRequest(id=workload_id, after_seq=last_seq)
            try:
                async for message in self._workloads.Watch(request, metadata=self._metadata, timeout=left):
                    event = Event.from_proto(message)
                    last_seq, heard, delays = event.seq, time.monotonic(), backoff()
                    yield event
                return
            except grpc.aio.AioRpcError as error:
                failure = ClientError.of(error)
                if failure.code == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
                    raise WaitTimeout(f"{workload_id} has not finished after {timeout:g}s") from None
                if not broker_away(failure) or time.monotonic() - heard > reconnect_for:
                    raise typed(failure) from None
            await asyncio.sleep(next(delays))

    async def _resolve_when_up(self, ref: str, reconnect_for: float) -> str:
        """The workload's id, waiting out a broker that is restarting (as the watch itself does)."""
        started, delays = time.monotonic(), backoff()
        while True:
            try:
                return (await self.get(ref)).id
            except ClientError as error:
                if not broker_away(error) or time.monotonic() - started > reconnect_for:
                    raise
            await asyncio.sleep(next(delays))

    async def wait(self, ref: str, *, timeout: float | None = None) -> WorkloadStatus:
        workload_id = (await self.get(ref)).id
        async for _ in self.watch(workload_id, timeout=timeout):
            pass
        return await self.get(workload_id)

    async def logs(
        self, ref: str, *, attempt: int | None = None, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[str]:
        request = workload_service_pb2.LogsRequest(id=ref, attempt=attempt or 0, tail=tail, follow=follow)
        try:
            async for batch in self._workloads.Logs(request, metadata=self._metadata):
                for line in batch.lines:
                    yield line
        except grpc.aio.AioRpcError as error:
            raise typed(ClientError.of(error)) from None

    async def sites(self) -> builtins.list[Site]:
        response = await self._unary(self._sites.ListSites, site_service_pb2.ListSitesRequest())
        return [Site.from_proto(s) for s in response.sites]

    async def usage(
        self,
        tenant: str = "",
        site: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        by: Iterable[str] = (),
    ) -> Usage:
        request = usage_request(tenant, site, since, until, by)
        return Usage.from_proto(await self._unary(self._usage.GetUsage, request))

    async def quote(self, workload: WorkloadSpec | dict[str, Any] | str | Path) -> Quote:
        spec = spec_to_proto(workloads.as_spec(workload))
        request = workload_service_pb2.SubmitRequest(spec=spec, dry_run=True)
        return Quote.from_proto(await self._unary(self._workloads.Submit, request))

    async def pause(self) -> bool:
        request = operator_service_pb2.SetPlacementPausedRequest(paused=True)
        return bool((await self._unary(self._operator.SetPlacementPaused, request)).paused)

    async def resume(self) -> bool:
        request = operator_service_pb2.SetPlacementPausedRequest(paused=False)
        return bool((await self._unary(self._operator.SetPlacementPaused, request)).paused)
