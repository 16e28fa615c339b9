"""Batches for a stream of messages: the agent stream (the broker and the agents alike) and the
relay between the broker's fronts and its engine process.

Each stream message costs the sender and the reader tens of microseconds in gRPC, far
more than its parse; under load the outbox holds many, so a sender takes what is
queued now, up to a byte budget well under gRPC's 4 MiB message limit, and sends it as
one. An idle stream still sends each message at once: nothing waits to fill a batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, TypeVar


class Message(Protocol):
    def ByteSize(self) -> int: ...


M = TypeVar("M", bound=Message)

BATCH_BYTES = 1 << 20


async def batches(
    queue: asyncio.Queue[Any],
    encode: Callable[[Any], M] | None = None,
    limit: int = BATCH_BYTES,
    linger_s: float = 0.0,
    busy_s: float | None = None,
) -> AsyncIterator[list[M]]:
    """The queued items, encoded (or as they are, without `encode`), in order, in lists of as
    many as are there now within `limit` bytes (a larger one goes alone); ends at the first
    None. A lone item waits
    `linger_s` for company; with `busy_s`, only when the last batch left less than `busy_s`
    ago (under load), so a quiet stream sends at once. (The queue's items are Any: mypy
    cannot bind a type variable to a union such as the broker's ToAgent.)"""
    carried: M | None = None
    loop = asyncio.get_running_loop()
    last_sent = -float("inf")
    while True:
        if carried is None:
            item = await queue.get()
            if item is None:
                return
            carried = encode(item) if encode else item
            if linger_s and queue.empty() and (busy_s is None or loop.time() - last_sent < busy_s):
                await asyncio.sleep(linger_s)  # let what follows at once join this batch
        batch, total = [carried], carried.ByteSize()
        carried = None
        while not queue.empty():
            following = queue.get_nowait()
            if following is None:
                yield batch
                return
            message = encode(following) if encode else following
            total += message.ByteSize()
            if total > limit:
                carried = message
                break
            batch.append(message)
        if busy_s is not None:
            last_sent = loop.time()
        yield batch
