"""An event's row holds every field of the event (the writer inserts exactly that)."""

from __future__ import annotations

import dataclasses

from broker.engine.records import Event


def test_an_events_row_has_every_field_with_its_value() -> None:
    event = Event(
        seq=7, workload_id="wl-1", state="RUNNING", site="cyberport", attempt=2, message="m", at=1.5
    )
    assert event.row() == dataclasses.asdict(event)
