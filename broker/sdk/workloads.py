"""Workload specs on the client side: from a model, a dict, a file or stdin, checked before sending.

The broker refuses a spec above `MAX_SPEC_BYTES` on the wire, and gRPC a message above
its limit only after sending it all; both are checked here first, so a too-large file is
refused at once with its size, never after a transfer with gRPC's raw message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from broker.spec import MAX_SPEC_BYTES, WorkloadSpec, parse_spec, spec_to_proto
from broker.validation import InvalidInput, decode_text, parse_yaml, read_text

STDIN = "-"
# A workload file may hold comments and a large runtime_env; anything above this is not one.
MAX_WORKLOAD_FILE_BYTES = 1024 * 1024


def load(source: str | Path) -> WorkloadSpec:
    """The workload in a YAML file, or on stdin for "-"."""
    if str(source) == STDIN:
        raw = sys.stdin.buffer.read(MAX_WORKLOAD_FILE_BYTES + 1)
        if len(raw) > MAX_WORKLOAD_FILE_BYTES:
            raise InvalidInput("<stdin>", [f"more than {MAX_WORKLOAD_FILE_BYTES // 1024} KB: not a workload"])
        name, text = "<stdin>", decode_text(raw, "<stdin>")
    else:
        name, text = str(source), read_text(Path(source), MAX_WORKLOAD_FILE_BYTES)
    return checked(parse_spec(parse_yaml(text, name), name), name)


def checked(spec: WorkloadSpec, source: str = "workload") -> WorkloadSpec:
    size = len(spec_to_proto(spec).SerializeToString())
    if size > MAX_SPEC_BYTES:
        raise InvalidInput(
            source, [f"is {size:,} bytes on the wire; the broker accepts at most {MAX_SPEC_BYTES:,}"]
        )
    return spec


def as_spec(workload: WorkloadSpec | dict[str, Any] | str | Path) -> WorkloadSpec:
    if isinstance(workload, WorkloadSpec):
        return checked(workload)
    if isinstance(workload, dict):
        return checked(parse_spec(workload))
    return load(workload)
