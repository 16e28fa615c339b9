"""Human output helpers: ages and run times, `--since`, list rows, `list -w`, completion."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from click.shell_completion import CompletionItem

from broker.cli import output
from broker.cli.errors import fail
from broker.client import Client, ClientError
from broker.sdk.client import backoff
from broker.sdk.errors import broker_away
from broker.sdk.settings import resolve

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since(text: str | None) -> datetime | None:
    """`--since`: a duration ago (30m, 2h, 7d) or a date/time (2026-11-23T10:00; UTC if no zone)."""
    if not text:
        return None
    match = _DURATION.match(text.strip().lower())
    if match:
        return datetime.now(UTC) - timedelta(seconds=float(match[1]) * _UNIT_S[match[2]])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(f"--since: {text!r} is neither a duration (30m, 2h, 7d) nor a date (2026-11-23T10:00)")
        raise  # unreachable: fail raises
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _parse(stamp: str | None) -> datetime | None:
    return None if not stamp else datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def duration(seconds: float | None) -> str | None:
    """kubectl's style: 45s, 12m, 3h20m, 2d5h."""
    if seconds is None:
        return None
    s = int(max(0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m}m" if m and h < 10 else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d{h}h" if h and d < 10 else f"{d}d"


def workload_row(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON keys, plus AGE and RUNTIME (running: since it started), and a queued
    workload's place and reason in MESSAGE (like squeue's REASON)."""
    now = datetime.now(UTC)
    created, updated = _parse(data["created_at"]), _parse(data["updated_at"])
    row = dict(data)
    row["age"] = duration((now - created).total_seconds()) if created else None
    running = data["state"] == "RUNNING" and updated is not None
    row["runtime"] = duration((now - updated).total_seconds()) if running and updated else None
    if data.get("queue_position"):
        row["message"] = f"#{data['queue_position']} {data['message']}"
    if data.get("site_unreachable_since"):
        row["message"] = unreachable(data)
    return row


def unreachable(data: dict[str, Any]) -> str:
    return (
        f"site {data['site']} unreachable since {data['site_unreachable_since']}; "
        f"requeued at {data['requeue_at']} unless it returns"
    )


def cell(value: Any) -> Any:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return value


def model_rows(sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "site": s["name"],
            **{k: m[k] for k in ("gpu_model", "gpus_total", "gpus_allocated", "gpus_reserved", "gpus_free")},
            "hkd_per_gpu_h": None
            if m["price_hkd_per_gpu_hour"] is None
            else f"{m['price_hkd_per_gpu_hour']:,.2f}",
        }
        for s in sites
        for m in s["gpu_models"]
    ]


def follow_changes(
    client: Client,
    after_seq: int,
    tenant: str,
    states: list[str],
    site: str,
    name: str,
    as_json: bool,
    wide: bool,
) -> None:
    """`list -w`: one line per change of a matching workload, until Ctrl-C; reconnects if the
    broker restarts, going on after the last change seen."""
    from broker.cli.workloads import WIDE_COLUMNS, WORKLOAD_COLUMNS

    columns = WIDE_COLUMNS if wide else WORKLOAD_COLUMNS
    last = after_seq
    try:
        for event in _events(client, after_seq, tenant):
            last = event.seq
            change = output.event_json(event)
            if (states and change["state"] not in states) or (site and change["site"] != site):
                continue
            data = workload_row(output.workload_json(client.get(event.workload_id)))
            if name and data["name"] != name:
                continue
            if as_json:
                click.echo(output.json.dumps({**change, "workload_status": data}))
            else:
                click.echo("  ".join(str(cell(data.get(c))) for c in columns))
    except KeyboardInterrupt:
        click.echo(f"\n(stopped after event {last})", err=True)


def _events(client: Client, after_seq: int, tenant: str) -> Iterator[Any]:
    last, delays = after_seq, backoff()
    while True:
        try:
            for event in client.watch_all(last, tenant):
                last, delays = event.seq, backoff()
                yield event
            return
        except ClientError as error:
            if not broker_away(error):
                raise
        time.sleep(next(delays))


def complete_workloads(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Workload ids (and names) for shell completion: one List call, silent if it fails."""
    try:
        settings = resolve()
        with Client(settings.endpoint, settings.token, timeout=2.0, tls=settings.tls) as client:
            workloads = client.list_page(limit=200).workloads
    except Exception:  # completion must never print a traceback into the user's shell
        return []
    items = [
        CompletionItem(w.id, help=f"{w.name} {w.tenant}") for w in workloads if w.id.startswith(incomplete)
    ]
    names = {w.name for w in workloads if w.name.startswith(incomplete)}
    return items + [CompletionItem(n, help="the latest with this name") for n in sorted(names)]
