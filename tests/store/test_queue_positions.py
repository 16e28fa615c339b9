"""Queue places for Get and List: worked out at most once a second, not once per call."""

from __future__ import annotations

from typing import Any, cast

from broker.engine.liveview import QueuePositions


class CountingCore:
    def __init__(self) -> None:
        self.queue = ["wl-a", "wl-b"]
        self.walks = 0

    def queued_ids(self) -> list[str]:
        self.walks += 1
        return list(self.queue)


def test_places_are_walked_once_a_second_however_often_they_are_asked() -> None:
    core, cache = CountingCore(), QueuePositions(max_age_s=1.0)
    for step in range(100):
        assert cache.of(cast(Any, core), 10.0 + step / 200, ["wl-b"]) == {"wl-a": 1, "wl-b": 2}
        core.queue.append(f"wl-{step}")  # a flood: work joins all the time
    assert core.walks == 1


def test_work_asked_about_that_joined_since_is_placed_at_once() -> None:
    core, cache = CountingCore(), QueuePositions(max_age_s=1.0)
    cache.of(cast(Any, core), 10.0, ["wl-a"])
    core.queue.insert(0, "wl-new")
    assert cache.of(cast(Any, core), 10.1, ["wl-new"]) == {"wl-new": 1, "wl-a": 2, "wl-b": 3}
    assert core.walks == 2


def test_places_older_than_their_age_are_walked_again() -> None:
    core, cache = CountingCore(), QueuePositions(max_age_s=1.0)
    cache.of(cast(Any, core), 10.0)
    core.queue.reverse()  # shares moved: same work, another order
    assert cache.of(cast(Any, core), 11.5) == {"wl-b": 1, "wl-a": 2}
    assert core.walks == 2
