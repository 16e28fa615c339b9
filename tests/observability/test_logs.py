"""Log lines: JSON or text, with a workload's id and trace id when the line concerns one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from broker import telemetry
from broker.observability.logs import JsonFormatter, TextFormatter, TraceContextFilter, workload_fields


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    logger = logging.getLogger("fedbroker.test-logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def test_json_lines_carry_the_workload_and_the_current_span(
    logged: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, stream, handler = logged
    handler.setFormatter(JsonFormatter())
    logger.info(
        "%s is %s", "wl-1", "PLACED", extra=workload_fields("wl-1", "ab" * 16, site="cyberport", attempt=1)
    )
    with telemetry.tracer().start_as_current_span("launch") as span:
        logger.warning("inside a span")
        context = span.get_span_context()
    logger.info("nothing to say about a workload")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "wl-1 is PLACED" and first["level"] == "INFO"
    assert (first["workload_id"], first["trace_id"], first["site"], first["attempt"]) == (
        "wl-1",
        "ab" * 16,
        "cyberport",
        1,
    )
    assert second["trace_id"] == format(context.trace_id, "032x")
    assert second["span_id"] == format(context.span_id, "016x")
    assert "workload_id" not in third and "trace_id" not in third
    assert {"time", "level", "logger", "message"} <= set(third)


def test_text_lines_append_the_context(
    logged: tuple[logging.Logger, io.StringIO, logging.StreamHandler[io.StringIO]],
) -> None:
    logger, stream, handler = logged
    handler.setFormatter(TextFormatter())
    logger.info("charged", extra=workload_fields("wl-2", "cd" * 16, tenant="lion-rock-ai"))
    line = stream.getvalue().strip()
    assert line.endswith(
        f"fedbroker.test-logs: charged [workload_id=wl-2 tenant=lion-rock-ai trace_id={'cd' * 16}]"
    )
