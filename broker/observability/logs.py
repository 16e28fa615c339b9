"""Process logging: ``--log-format text|json``, with workload and trace ids on the lines that have them.

A line concerns a workload when the caller passes ``extra=workload_fields(...)``; a line
logged inside a span also gets that span's trace and span ids. JSON lines are one object
each (``time``, ``level``, ``logger``, ``message``, then those fields), for log shippers
that index fields; text lines append them as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

FORMATS = ("text", "json")
# Fields a record may carry (via `extra`), in the order they are written.
CONTEXT_FIELDS = ("workload_id", "attempt", "tenant", "site", "state", "reason", "trace_id", "span_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def workload_fields(workload_id: str, trace_id: str = "", **more: str | int | float | None) -> dict[str, Any]:
    """The `extra` of a line about one workload (None values are left out)."""
    fields: dict[str, Any] = {"workload_id": workload_id}
    if trace_id:
        fields["trace_id"] = trace_id
    fields.update({k: v for k, v in more.items() if v is not None})
    return fields


class TraceContextFilter(logging.Filter):
    """Adds the current span's ids to a record that has none of its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id = format(context.trace_id, "032x")
                record.span_id = format(context.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        pairs = [f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if getattr(record, n, None) is not None]
        if not pairs:
            return text
        head, sep, tail = text.partition("\n")  # keep a traceback below the context
        return f"{head} [{' '.join(pairs)}]{sep}{tail}"


def setup_logging(level: str, fmt: str = "text") -> None:
    """Configure the root logger once: `level` and `fmt` (``text`` or ``json``) on stderr."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (known: {', '.join(FORMATS)})")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(TraceContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
