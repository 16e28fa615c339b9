"""The typed Python SDK: what a data scientist uses from a notebook.

    from fedbroker import Client, Workload

    with Client() as client:                      # FEDBROKER_* or the current context
        run = client.submit(Workload(...))
        done = client.wait(run.id, timeout=3600)  # survives broker restarts

Results are dataclasses with an enum `State` (broker/sdk/models.py); errors are typed
(broker/sdk/errors.py). `AsyncClient` (broker/sdk/aio.py) has the same methods, awaitable.
"""

from __future__ import annotations

import builtins
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import grpc

from broker.client import Client as RawClient
from broker.client import ClientError
from broker.sdk import workloads
from broker.sdk.errors import WaitTimeout, broker_away, typed
from broker.sdk.models import Event, Explanation, Quote, Site, State, Usage, WorkloadStatus
from broker.sdk.settings import Settings, resolve
from broker.spec import WorkloadSpec

P = ParamSpec("P")
R = TypeVar("R")

# How long a watch keeps reconnecting while the broker is away (a restart takes seconds).
RECONNECT_FOR_S = 300.0
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.2, 5.0


def _typed_errors(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ClientError as error:
            raise typed(error) from None

    return call


def since_time(since: datetime | timedelta | None) -> datetime | None:
    """`since=timedelta(hours=1)` means an hour ago."""
    if isinstance(since, timedelta):
        return datetime.now(UTC) - since
    return since


def backoff(first: float = BACKOFF_FIRST_S, most: float = BACKOFF_MAX_S) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(most, delay * 2)


class Client:
    """A broker connection. `endpoint`/`token`/`context` as the CLI's flags; the rest from the
    environment and the client config (broker/sdk/settings.py)."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        context: str | None = None,
        timeout: float = 30.0,
        settings: Settings | None = None,
        raw: RawClient | None = None,
    ) -> None:
        self.settings = settings or resolve(endpoint=endpoint, token=token, context=context)
        # `raw`: share a connection (the CLI's); else one of our own
        self.raw = raw or RawClient(self.settings.endpoint, self.settings.token, timeout, self.settings.tls)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType] | None) -> None:
        self.close()

    def close(self) -> None:
        self.raw.close()

    # ------------------------------------------------------------------ workloads

    @_typed_errors
    def submit(
        self, workload: WorkloadSpec | dict[str, Any] | str | Path, *, request_id: str | None = None
    ) -> WorkloadStatus:
        """Queue a workload (a `Workload`, a dict, or a YAML file's path); placed at once if it fits.
        Retried while the broker is unavailable, under one request id (`request_id`, else a new
        UUID): the same id always answers with the same workload, never a second one."""
        response = self.raw.submit(workloads.as_spec(workload), request_id=request_id)
        return WorkloadStatus.from_proto(response.workload)

    @_typed_errors
    def dry_run(self, workload: WorkloadSpec | dict[str, Any] | str | Path) -> Explanation:
        """Where it would go now and why, or why it could never run; nothing is queued."""
        return Explanation.from_proto(self.raw.submit(workloads.as_spec(workload), dry_run=True).explanation)

    @_typed_errors
    def get(self, ref: str) -> WorkloadStatus:
        """By id, unique id prefix, or name (the latest with that name)."""
        return WorkloadStatus.from_proto(self.raw.get(ref))

    @_typed_errors
    def list(
        self,
        *,
        state: str | State | Iterable[str | State] = (),
        tenant: str = "",
        site: str = "",
        name: str = "",
        since: datetime | timedelta | None = None,
        limit: int = 0,
    ) -> builtins.list[WorkloadStatus]:
        """Newest first; states case-insensitive."""
        states = [state] if isinstance(state, str) else list(state)
        page = self.raw.list_page(
            [str(s).upper() for s in states],
            limit,
            tenant=tenant,
            site=site,
            name=name,
            since=since_time(since),
        )
        return [WorkloadStatus.from_proto(w) for w in page.workloads]

    @_typed_errors
    def cancel(self, ref: str) -> WorkloadStatus:
        return WorkloadStatus.from_proto(self.raw.cancel(ref))

    @_typed_errors
    def explain(self, ref: str) -> Explanation:
        return Explanation.from_proto(self.raw.explain(ref))

    @_typed_errors
    def events(self, ref: str) -> builtins.list[Event]:
        """Its history so far, oldest first."""
        return [Event.from_proto(e) for e in self.raw.events(ref)]

    def watch(
        self, ref: str, *, timeout: float | None = None, reconnect_for: float = RECONNECT_FOR_S
    ) -> Iterator[Event]:
        """Its events from the start until it finishes. If the broker restarts, the watch
        reconnects and resumes after the last event it saw (for up to `reconnect_for` seconds
        of silence); `timeout` ends it with `WaitTimeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        workload_id = self._resolve_when_up(ref, reconnect_for)
        last_seq, heard = 0, time.monotonic()
        delays = backoff()
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(f"{workload_id} has not finished after {timeout:g}s")
            try:
                for message in self.raw.watch(workload_id, timeout=left, after_seq=last_seq):
                    event = Event.from_proto(message)
                    last_seq, heard, delays = event.seq, time.monotonic(), backoff()
                    yield event
                return
            except ClientError as error:
                if error.code == grpc.StatusCode.DEADLINE_EXCEEDED and timeout is not None:
                    raise WaitTimeout(f"{workload_id} has not finished after {timeout:g}s") from None
                if not broker_away(error) or time.monotonic() - heard > reconnect_for:
                    raise typed(error) from None
            time.sleep(next(delays))

    def _resolve_when_up(self, ref: str, reconnect_for: float) -> str:
        """The workload's id, waiting out a broker that is restarting (as the watch itself does)."""
        started, delays = time.monotonic(), backoff()
        while True:
            try:
                return self.raw.get(ref).id
            except ClientError as error:
                if not broker_away(error) or time.monotonic() - started > reconnect_for:
                    raise typed(error) from None
            time.sleep(next(delays))

    def wait(self, ref: str, *, timeout: float | None = None) -> WorkloadStatus:
        """Block until it finishes (whatever the state), and return it; `WaitTimeout` if it did not."""
        workload_id = self.get(ref).id
        for _ in self.watch(workload_id, timeout=timeout):
            pass
        return self.get(workload_id)

    def logs(
        self, ref: str, *, attempt: int | None = None, tail: int | None = None, follow: bool = False
    ) -> Iterator[str]:
        """An attempt's log lines (the latest attempt by default), relayed from its site."""
        try:
            for batch in self.raw.logs(ref, attempt=attempt or 0, tail=tail, follow=follow):
                yield from batch.lines
        except ClientError as error:
            raise typed(error) from None

    # ------------------------------------------------------------------ the federation

    @_typed_errors
    def sites(self) -> builtins.list[Site]:
        return [Site.from_proto(s) for s in self.raw.sites()]

    @_typed_errors
    def usage(
        self,
        tenant: str = "",
        site: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        by: Iterable[str] = (),
    ) -> Usage:
        """HK$ settled, summed `by` tenant, program, site, gpu_model and/or month (default the
        first three), with each visible tenant's budget and cap; a tenant sees only itself."""
        return Usage.from_proto(self.raw.usage(tenant, site, since, until, by))

    @_typed_errors
    def quote(self, workload: WorkloadSpec | dict[str, Any] | str | Path) -> Quote:
        """Before submit: where it would go now, and at each site the GPU-hours, price, total,
        what the program and the tenant would pay, and the budget and cap left after."""
        return Quote.from_proto(self.raw.submit(workloads.as_spec(workload), dry_run=True))

    @_typed_errors
    def pause(self) -> bool:
        return self.raw.pause()

    @_typed_errors
    def resume(self) -> bool:
        return self.raw.resume()
