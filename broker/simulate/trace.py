"""Reading a GPU-cluster job trace in the common CSV shape (see the traces' README).

Columns by header name: ``job_id``, ``submit_s``, ``gpus``, ``duration_s`` and ``cluster`` are
required; ``gpus_per_node`` is optional; others (``tenant``, ``status``, ``gpu_model``) are
ignored because the public traces leave them empty. A ``.gz`` file (by its magic bytes) is
read through gzip. Every error names the file, the line and the column, so a bad row in a
70,000-line file can be found.

Rows that describe no GPU work are kept out of the jobs and counted in ``Trace.skipped``:
a job with an empty ``duration_s`` never ran, and ``gpus == 0`` is a CPU-only pod.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class _ByteLines(Protocol):  # a plain or gzip binary file
    def readline(self) -> bytes: ...


REQUIRED = ("job_id", "submit_s", "gpus", "duration_s", "cluster")
OPTIONAL = ("gpus_per_node",)


class TraceError(ValueError):
    """A malformed trace file; the message names file, line and column."""

    def __init__(
        self, path: str, line: int | None, column: int | None, name: str | None, problem: str
    ) -> None:
        self.path, self.line, self.column, self.problem = path, line, column, problem
        where = "" if line is None else f"line {line}: "
        if column is not None:
            where = f"line {line}, column {column}" + (f" ({name})" if name else "") + ": "
        super().__init__(f"{path}: {where}{problem}")


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job as the trace gives it (fractional GPUs included)."""

    line: int  # line in the file, for messages
    job_id: str
    submit_s: float
    gpus: float
    gpus_per_node: float | None  # None: the trace does not say
    duration_s: float
    cluster: str


@dataclass(frozen=True, slots=True)
class Trace:
    path: str
    jobs: tuple[TraceJob, ...]  # sorted by submit time (stable)
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows


def read_trace(path: str | Path) -> Trace:
    """Every job of the file, sorted by submit time; TraceError on the first bad row."""
    name = str(path)
    try:
        with open(path, "rb") as raw:
            gzipped = raw.read(2) == b"\x1f\x8b"
        binary = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
    except OSError as error:
        raise TraceError(name, None, None, None, f"cannot read: {error.strerror}") from None
    with binary:
        jobs, skipped = _parse(name, _lines(name, binary))
    jobs.sort(key=lambda j: j.submit_s)  # stable: the file's order breaks ties
    return Trace(name, tuple(jobs), skipped)


def _lines(name: str, binary: _ByteLines) -> Iterator[str]:
    """Decoded lines; decoding and gzip errors name the line they were met on (decoding
    line by line, not in the text layer's 8 KB chunks, keeps that number right)."""
    line = 0
    while True:
        try:
            raw = binary.readline()
            if not raw:
                return
            line += 1
            text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
        except (UnicodeDecodeError, OSError, EOFError) as error:
            raise TraceError(name, line or 1, None, None, f"unreadable: {error}") from None
        yield text


def _parse(name: str, lines: Iterator[str]) -> tuple[list[TraceJob], Counter[str]]:
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise TraceError(name, 1, None, None, f"not CSV: {error}") from None
    if header is None:
        raise TraceError(name, 1, None, None, "empty file: expected a header row")
    columns = {c.strip(): i for i, c in enumerate(header)}
    for col in REQUIRED:
        if col not in columns:
            raise TraceError(name, 1, None, None, f"missing column {col!r} in the header")
    idx = {c: columns[c] for c in (*REQUIRED, *OPTIONAL) if c in columns}
    width = len(header)
    jobs: list[TraceJob] = []
    skipped: Counter[str] = Counter()
    seen: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise TraceError(name, reader.line_num, None, None, f"not CSV: {error}") from None
        line = reader.line_num
        if not row:
            continue
        if len(row) != width:  # point at the first missing (or first extra) field
            missing = header[len(row)].strip() if len(row) < width else None
            problem = f"expected {width} fields, found {len(row)}"
            raise TraceError(name, line, min(len(row), width) + 1, missing, problem)
        i = idx["job_id"]
        job_id = row[i].strip()
        if not job_id:
            raise TraceError(name, line, i + 1, "job_id", "empty job_id")
        if job_id in seen:
            first = seen[job_id]
            raise TraceError(
                name, line, i + 1, "job_id", f"duplicate job_id {job_id!r} (first on line {first})"
            )
        seen[job_id] = line
        submit = _number(name, line, row, idx, "submit_s")
        gpus = _number(name, line, row, idx, "gpus")
        gpn = _optional(name, line, row, idx, "gpus_per_node")
        if not row[idx["duration_s"]].strip():
            skipped["never ran (no duration)"] += 1
            continue
        duration = _number(name, line, row, idx, "duration_s")
        if gpus == 0:
            skipped["no GPUs (CPU-only)"] += 1
            continue
        cluster = row[idx["cluster"]].strip()
        jobs.append(TraceJob(line, job_id, submit, gpus, gpn, duration, cluster))
    return jobs, skipped


def _number(name: str, line: int, row: list[str], idx: dict[str, int], col: str) -> float:
    """The cell as a finite number >= 0."""
    i = idx[col]
    text = row[i].strip()
    try:
        value = float(text)
    except ValueError:
        problem = "empty, expected a number" if not text else f"not a number: {text!r}"
        raise TraceError(name, line, i + 1, col, problem) from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(name, line, i + 1, col, f"must be a finite number >= 0, got {text!r}")
    return value


def _optional(name: str, line: int, row: list[str], idx: dict[str, int], col: str) -> float | None:
    """An optional column's number; None when the column is absent, the cell empty or 0."""
    if col not in idx or not row[idx[col]].strip():
        return None
    return _number(name, line, row, idx, col) or None
