"""The trace reader: gzip or plain, rows left out with a reason, errors naming line and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from simulate_fixtures import HEADER, TINY_TRACE, write

from broker.simulate import TraceError, read_trace


def test_reads_plain_and_gzip_alike(tmp_path: Path) -> None:
    plain = read_trace(write(tmp_path / "t.csv", TINY_TRACE))
    packed = tmp_path / "t.csv.gz"
    packed.write_bytes(gzip.compress(TINY_TRACE.encode()))
    assert read_trace(packed).jobs == plain.jobs
    assert [j.job_id for j in plain.jobs] == ["j1", "j2", "j3", "j4"]
    j4 = plain.jobs[3]
    assert (j4.line, j4.submit_s, j4.gpus, j4.gpus_per_node, j4.duration_s, j4.cluster) == (
        5, 600.0, 1.0, None, 3600.0, "c-scan"
    )  # fmt: skip


def test_sorts_by_submit_time_and_counts_what_it_leaves_out(tmp_path: Path) -> None:
    text = HEADER + (
        "late,50,1,1,10,,,,c\n"
        "pending,10,1,1,,,Pending,,c\n"  # never ran
        "cpu,20,0,0,30,,,,c\n"  # CPU-only
        "share,30,0.46,0.46,40,,,,c\n"
        "early,5,2,,60,,,,c\n"
    )
    trace = read_trace(write(tmp_path / "t.csv", text))
    assert [j.job_id for j in trace.jobs] == ["early", "share", "late"]
    assert trace.jobs[1].gpus == 0.46 and trace.jobs[1].gpus_per_node == 0.46
    assert dict(trace.skipped) == {"never ran (no duration)": 1, "no GPUs (CPU-only)": 1}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("a,0,two,,60,,,,c\n", "line 2, column 3 (gpus): not a number: 'two'"),
        ("a,0,1,,60,,,,c\nb,-5,1,,60,,,,c\n", "line 3, column 2 (submit_s): must be a finite number >= 0"),
        ("a,0,1,,60,,,,c\nb,1,1,,inf,,,,c\n", "line 3, column 5 (duration_s): must be a finite number >= 0"),
        ("a,0,1,,60,,,,c\nb,0,1,,60\n", "line 3, column 6 (tenant): expected 9 fields, found 5"),
        ("a,0,1,,60,,,,c,extra\n", "line 2, column 10: expected 9 fields, found 10"),
        ("a,0,1,x,60,,,,c\n", "line 2, column 4 (gpus_per_node): not a number: 'x'"),
        ("a,,1,,60,,,,c\n", "line 2, column 2 (submit_s): empty, expected a number"),
        ("a,0,1,,60,,,,c\na,5,1,,60,,,,c\n", "line 3, column 1 (job_id): duplicate job_id 'a' (first on"),
        (',0,1,,60,,,,c\n', "line 2, column 1 (job_id): empty job_id"),
        ('a,0,1,,60,,,,"c\n', "line 2: not CSV"),
    ],
)  # fmt: skip
def test_errors_name_line_and_column(tmp_path: Path, rows: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", HEADER + rows)
    with pytest.raises(TraceError) as caught:
        read_trace(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_header_errors(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"line 1: missing column 'duration_s' in the header"):
        read_trace(write(tmp_path / "h.csv", "job_id,submit_s,gpus,cluster\na,0,1,c\n"))
    with pytest.raises(TraceError, match=r"line 1: empty file"):
        read_trace(write(tmp_path / "e.csv", ""))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match=r"missing\.csv: cannot read"):
        read_trace(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(HEADER.encode() + b"a,0,1,,60,,,,\xff\xfe\n")
    with pytest.raises(TraceError, match=r"line 2: unreadable"):
        read_trace(bad)
    truncated = tmp_path / "cut.csv.gz"
    rows = "".join(f"j{i},{i},1,,60,,,,c\n" for i in range(2000))
    truncated.write_bytes(gzip.compress((HEADER + rows).encode())[:-20])
    with pytest.raises(TraceError, match=r"cut\.csv\.gz: line \d+: unreadable"):
        read_trace(truncated)
