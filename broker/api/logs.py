"""`fedbroker logs`: an attempt's log lines, relayed from the agent of the site that ran it.

Kept apart from the engine on purpose: a log request reads the workload (visibility,
and which site ran the attempt) on a worker thread like Get does, then talks to the
site's agent session directly: a FetchLogs goes onto the session's outbox, the agent's
LogChunks come back through `AgentSession.log_readers` keyed by a request id. Nothing
goes through a scheduling cycle or the database, so a long `logs -f` costs the cycle
nothing. Lines are never stored by the broker.

Errors, each in words: no such workload (or not yours), no such attempt, the site's
agent not connected or not answering (UNAVAILABLE), the backend does not know the
attempt (NOT_FOUND) or keeps no logs (FAILED_PRECONDITION).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

from fedbroker.v1 import workload_service_pb2
from fedbroker.v1.agent_service_pb2 import LogChunk as Chunk

from broker.engine.engine import Engine
from broker.engine.records import FetchLogs, StopLogs
from broker.errors import BrokerError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from broker.store import reads

# An agent that says nothing this long after a request is taken as unreachable (a stalled
# stream, or an agent too old to know FetchLogs, which it ignores). Later chunks may take
# as long as the workload is quiet: with follow, silence is normal.
FIRST_CHUNK_TIMEOUT_S = 15.0


async def relay(
    engine: Engine, tenant: str | None, request: workload_service_pb2.LogsRequest
) -> AsyncIterator[workload_service_pb2.LogLines]:
    """The lines of the attempt `request` names; `tenant` None: an operator, who may read any."""
    if request.attempt < 0:
        raise InvalidArgument("attempt: must not be negative (0: the latest)")
    if request.HasField("tail") and request.tail < 0:
        raise InvalidArgument("tail: must not be negative")
    record = await engine.get(request.id, tenant)  # NotFound for another tenant's id too
    if record.attempt == 0:
        raise FailedPrecondition(f"workload {record.id} has not been launched yet: no logs")
    attempt = request.attempt or record.attempt
    if attempt > record.attempt:
        raise NotFound(f"workload {record.id} has no attempt {attempt}: it has had {record.attempt}")
    site = await engine.read(lambda conn: reads.attempt_site(conn, record.id, attempt))
    if site is None:
        raise NotFound(f"workload {record.id} has no attempt {attempt} recorded at any site")
    link = engine.links.get(site)
    session = link.session if link is not None else None
    if session is None:
        raise Unavailable(f"site {site} is unreachable: its agent is not connected to the broker")

    request_id = uuid.uuid4().hex
    chunks: asyncio.Queue[Chunk | None] = asyncio.Queue()
    session.log_readers[request_id] = chunks
    tail = request.tail if request.HasField("tail") else None
    session.outbox.put_nowait(FetchLogs(request_id, record.id, attempt, tail, request.follow))
    finished = False
    try:
        timeout: float | None = FIRST_CHUNK_TIMEOUT_S
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.get(), timeout)
            except TimeoutError:
                raise Unavailable(
                    f"site {site} is unreachable: its agent did not answer in {FIRST_CHUNK_TIMEOUT_S:g}s"
                ) from None
            timeout = None
            if chunk is None:
                finished = True  # the stream is gone: nothing to stop
                raise Unavailable(f"site {site}'s agent disconnected while sending the logs")
            if chunk.lines:
                yield workload_service_pb2.LogLines(attempt=attempt, site=site, lines=chunk.lines)
            if chunk.done:
                finished = True
                if chunk.error:
                    raise _error(chunk, record.id, attempt, site)
                return
    finally:
        session.log_readers.pop(request_id, None)
        if not finished:  # the reader left early (Ctrl-C on `logs -f`): the agent stops reading
            session.outbox.put_nowait(StopLogs(request_id))


def deliver(readers: dict[str, asyncio.Queue[Chunk | None]], chunk: Chunk) -> None:
    """An agent's chunk to the relay waiting for it; one whose reader has gone is dropped."""
    reader = readers.get(chunk.request_id)
    if reader is not None:
        reader.put_nowait(chunk)


def _error(chunk: Chunk, workload_id: str, attempt: int, site: str) -> BrokerError:
    said = f": {chunk.message}" if chunk.message else ""
    if chunk.error == Chunk.ERROR_NOT_FOUND:
        return NotFound(f"site {site} has no logs of {workload_id} attempt {attempt}{said}")
    if chunk.error == Chunk.ERROR_NO_LOGS:
        return FailedPrecondition(f"the backend at site {site} keeps no logs{said}")
    return Unavailable(f"site {site} could not read the logs of {workload_id} attempt {attempt}{said}")
