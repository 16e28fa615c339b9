"""The agent stream's batching: order kept, byte budget kept, nothing lost or held back."""

from __future__ import annotations

import asyncio

from fedbroker.v1 import agent_service_pb2 as pb

from broker.batching import batches


def _ack(n: int) -> pb.AgentMessage:
    return pb.AgentMessage(ack=pb.Ack(workload_id=f"w-{n:04d}", attempt=1))


async def _collect(items: list[pb.AgentMessage | None], limit: int) -> list[list[pb.AgentMessage]]:
    queue: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)
    return [batch async for batch in batches(queue, lambda m: m, limit)]


def test_what_is_queued_goes_in_order_within_the_byte_budget() -> None:
    messages = [_ack(n) for n in range(100)]
    size = messages[0].ByteSize()
    got = asyncio.run(_collect([*messages, None], limit=10 * size))
    assert [m for batch in got for m in batch] == messages
    assert [len(batch) for batch in got] == [10] * 10
    assert all(sum(m.ByteSize() for m in batch) <= 10 * size for batch in got)


def test_a_message_larger_than_the_budget_goes_alone() -> None:
    big = pb.AgentMessage(ack=pb.Ack(workload_id="w" * 500, attempt=1))
    small = _ack(1)
    got = asyncio.run(_collect([small, big, small, None], limit=100))
    assert got == [[small], [big], [small]]


def test_an_idle_stream_sends_at_once_and_the_end_marker_ends_it() -> None:
    asyncio.run(_idle_then_end())


async def _idle_then_end() -> None:
    queue: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
    stream = batches(queue, lambda m: m)
    queue.put_nowait(_ack(1))
    assert await asyncio.wait_for(anext(stream), 1) == [_ack(1)]  # nothing waits to fill a batch
    pending = asyncio.ensure_future(anext(stream, None))
    await asyncio.sleep(0.01)
    assert not pending.done()
    queue.put_nowait(_ack(2))
    queue.put_nowait(_ack(3))
    queue.put_nowait(None)
    assert await asyncio.wait_for(pending, 1) == [_ack(2), _ack(3)]
    assert await anext(stream, None) is None


def test_a_linger_lets_what_follows_at_once_join_the_batch() -> None:
    async def scenario() -> list[list[pb.AgentMessage]]:
        queue: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        stream = batches(queue, lambda m: m, linger_s=0.05)
        queue.put_nowait(_ack(1))
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.01)  # within the linger
        queue.put_nowait(_ack(2))
        got = [await asyncio.wait_for(first, 1)]
        queue.put_nowait(None)
        got.extend([batch async for batch in stream])
        return got

    assert asyncio.run(scenario()) == [[_ack(1), _ack(2)]]


def test_with_busy_s_a_quiet_stream_sends_at_once_and_a_busy_one_lingers() -> None:
    """The relay's batching: no linger after a pause (a lone call pays nothing), a linger when
    the last batch left just now (under load, calls share a message)."""

    async def scenario() -> tuple[float, list[list[pb.AgentMessage]]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[pb.AgentMessage | None] = asyncio.Queue()
        stream = batches(queue, lambda m: m, linger_s=0.2, busy_s=0.1)
        queue.put_nowait(_ack(1))
        started = loop.time()
        got = [await asyncio.wait_for(anext(stream), 1)]  # quiet: at once, no 0.2 s linger
        quiet_s = loop.time() - started
        queue.put_nowait(_ack(2))  # right after the last batch: busy, so it waits for company
        second = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.05)
        assert not second.done()
        queue.put_nowait(_ack(3))
        got.append(await asyncio.wait_for(second, 1))
        await asyncio.sleep(0.15)  # quiet again
        queue.put_nowait(_ack(4))
        started = loop.time()
        got.append(await asyncio.wait_for(anext(stream), 1))
        return max(quiet_s, loop.time() - started), got

    slowest, got = asyncio.run(scenario())
    assert got == [[_ack(1)], [_ack(2), _ack(3)], [_ack(4)]]
    assert slowest < 0.1
