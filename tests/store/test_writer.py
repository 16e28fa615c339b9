"""The writer's multi-row statements store exactly what executemany would (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from broker.engine.records import Event
from broker.engine.tx import Rows
from broker.store.db import Store, _json_text
from broker.store.tables import LedgerRow, WorkloadEventRow, WorkloadRow
from broker.store.writer import INSERT_CHUNK, write

W = WorkloadRow.__table__  # type: ignore[attr-defined]
E = WorkloadEventRow.__table__  # type: ignore[attr-defined]
L = LedgerRow.__table__  # type: ignore[attr-defined]
COUNT = 2 * INSERT_CHUNK + 7  # two full statements and a remainder


def _workload(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "id": f"wl-{seq:04d}",
        "name": "train",
        "tenant": "lion-rock-ai",
        "backend": "ray",
        "spec": {"name": "train", "env": {"A": "1"}, "resources": {"gpus_per_replica": 8}},
        "state": "QUEUED",
        "site": None,
        "nodes": [],
        "attempt": 0,
        "acked": False,
        "trace_id": "",
        "traceparent": "",
        "message": "",
        "created_at": 1.5,
        "updated_at": 1.5,
        "started_at": None,
        "reason": "",
        "infra_requeues": 0,
        "doubt_requeues": 0,
        "retry_at": None,
        "preemptions": 0,
        "request_id": None if seq % 2 else f"req-{seq}",
    }


def _change(seq: int, state: str, **more: Any) -> dict[str, Any]:
    return {
        "b_id": f"wl-{seq:04d}",
        "state": state,
        "site": "cyberport",
        "nodes": [f"n{seq}", "n-b"],
        "attempt": 1,
        "acked": True,
        "traceparent": "00-abc-def-01",
        "message": f"placed {seq}",
        "updated_at": 2.25,
        "started_at": None,
        "reason": "",
        "infra_requeues": 0,
        "doubt_requeues": 0,
        "retry_at": None,
        "preemptions": 0,
        **more,
    }


def _rows(**parts: Any) -> Rows:
    empty: dict[str, Any] = {"inserted": [], "updated": [], "events": [], "decisions": [], "ledger": []}
    return Rows(**{**empty, **parts}, sites=[], settings={})


def test_many_rows_inserted_and_changed_read_back_exactly(db_url: str) -> None:
    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            write(conn, _rows(inserted=[_workload(i) for i in range(COUNT)]))
        changes = [_change(i, "PLACED") for i in range(COUNT)]
        # A workload changed twice in one transaction keeps its last change, as executemany would.
        changes.append(_change(3, "RUNNING", started_at=3.0, retry_at=9.5, preemptions=2))
        with store.engine.begin() as conn:
            write(conn, _rows(updated=changes))
        with store.engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(select(W))}
        assert len(rows) == COUNT
        first = rows["wl-0000"]
        assert (first.state, first.site, first.nodes) == ("PLACED", "cyberport", ["n0", "n-b"])
        assert (first.acked, first.message, first.updated_at) == (True, "placed 0", 2.25)
        assert (first.started_at, first.retry_at) == (None, None)
        assert first.spec == _workload(0)["spec"] and first.request_id == "req-0"
        assert rows["wl-0001"].request_id is None
        third = rows["wl-0003"]
        assert (third.state, third.started_at, third.retry_at, third.preemptions) == ("RUNNING", 3.0, 9.5, 2)
        assert all(r.state == "PLACED" for id_, r in rows.items() if id_ != "wl-0003")
    finally:
        store.close()


def test_events_and_ledger_rows_keep_their_values(db_url: str) -> None:
    store = Store(db_url)
    money = Decimal("1234.56789012")
    ledger = [
        {
            "seq": i + 1,
            "kind": "reserve",
            "closes": None,
            "workload_id": f"wl-{i:04d}",
            "attempt": 1,
            "tenant": "lion-rock-ai",
            "program": "hk-ai-subsidy" if i % 2 else None,
            "site": "cyberport",
            "gpu_model": "H800",
            "gpus": 8,
            "gpu_hours": Decimal(8),
            "price_hkd_per_gpu_hour": Decimal("40"),
            "rate": Decimal("0.7"),
            "total_hkd": money,
            "program_hkd": Decimal("0.01"),
            "tenant_hkd": money - Decimal("0.01"),
            "held_program_hkd": Decimal("0.01"),
            "held_tenant_hkd": money - Decimal("0.01"),
            "at": 5.0,
            "reason": "",
        }
        for i in range(COUNT)
    ]
    events = [
        Event(seq=i + 1, workload_id=f"wl-{i:04d}", state="QUEUED", site=None, attempt=0, message="m", at=4.0)
        for i in range(COUNT)
    ]
    try:
        with store.engine.begin() as conn:
            write(conn, _rows(events=events, ledger=ledger))
        with store.engine.connect() as conn:
            stored_ledger = conn.execute(select(L).order_by(L.c.seq)).all()
            stored_events = conn.execute(select(E).order_by(E.c.seq)).all()
        assert [r.total_hkd for r in stored_ledger] == [money] * COUNT
        assert [r.program for r in stored_ledger[:2]] == [None, "hk-ai-subsidy"]
        assert stored_ledger[-1].tenant_hkd == Decimal("1234.55789012")
        assert [(e.seq, e.workload_id, e.state, e.site, e.at) for e in stored_events] == [
            (i + 1, f"wl-{i:04d}", "QUEUED", None, 4.0) for i in range(COUNT)
        ]
    finally:
        store.close()


def test_json_columns_keep_what_orjson_refuses() -> None:
    document = {"big": 2**70, "n": [1, 2.5, None]}
    assert json.loads(_json_text(document)) == document
    assert json.loads(_json_text({1: "int key"})) == {"1": "int key"}  # as json.dumps writes it
