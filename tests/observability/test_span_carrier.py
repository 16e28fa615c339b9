"""`telemetry.span_carrier` without an exporter: ids only, but one trace per workload."""

from __future__ import annotations

import re

from opentelemetry import propagate, trace

from broker import telemetry

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def test_a_root_starts_a_new_trace_each_time() -> None:
    first = telemetry.span_carrier("fedbroker.submit", {"fedbroker.workload": "w1"})
    second = telemetry.span_carrier("fedbroker.submit", {"fedbroker.workload": "w2"})
    a, b = TRACEPARENT.match(first["traceparent"]), TRACEPARENT.match(second["traceparent"])
    assert a and b
    assert a.group(1) != b.group(1)
    assert telemetry.carrier_trace_id(first) == a.group(1)


def test_a_child_keeps_its_parents_trace_with_a_span_of_its_own() -> None:
    root = telemetry.span_carrier("fedbroker.submit", {})
    child = telemetry.span_carrier("fedbroker.dispatch", {}, root["traceparent"])
    assert telemetry.carrier_trace_id(child) == telemetry.carrier_trace_id(root)
    assert child["traceparent"] != root["traceparent"]
    # What the agent does with it: the SDK's own propagator reads it as a valid remote parent.
    context = trace.get_current_span(propagate.extract(child)).get_span_context()
    assert context.is_valid and context.is_remote
    assert format(context.trace_id, "032x") == telemetry.carrier_trace_id(root)


def test_a_malformed_parent_starts_a_new_trace() -> None:
    carrier = telemetry.span_carrier("fedbroker.dispatch", {}, "not-a-traceparent")
    assert TRACEPARENT.match(carrier["traceparent"])
