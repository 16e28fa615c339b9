"""The agent's side of `fedbroker logs`: answer the broker's FetchLogs from the backend's `logs`.

One task per request, so a slow log read (or a `-f` that lasts hours) never holds up
the stream, heartbeats or launches. Lines go back as LogChunks: whatever has
accumulated while the last chunk was being queued, up to a size limit, so a burst
travels in few messages and a quiet follow still shows each line at once. The last
chunk has `done` set, with an error when the backend could not answer. A StopLogs, or
the end of the stream, cancels the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from fedbroker.v1 import agent_service_pb2 as pb

from site_agents.backends.base import AttemptKey, Backend
from site_agents.errors import AttemptNotFound, BackendError

log = logging.getLogger("fedbroker.agent.logs")

MAX_LINE_CHARS = 16_384  # a longer line is cut: one line must not make a message too big for gRPC
MAX_CHUNK_CHARS = 512_000  # well under gRPC's 4 MiB message limit
MAX_CHUNK_LINES = 2_000
READ_AHEAD_LINES = 10_000  # lines read from the backend before the sender catches up

Send = Callable[[pb.AgentMessage], None]


class LogSender:
    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def fetch(self, request: pb.FetchLogs, send: Send) -> None:
        self.stop(request.request_id)
        task = asyncio.create_task(self._serve(request, send), name=f"agent logs {request.request_id}")
        self._tasks[request.request_id] = task
        task.add_done_callback(lambda done: self._forget(request.request_id, done))

    def stop(self, request_id: str) -> None:
        task = self._tasks.pop(request_id, None)
        if task is not None:
            task.cancel()

    def stop_all(self) -> None:
        """The stream ended: no one reads these any more."""
        for request_id in list(self._tasks):
            self.stop(request_id)

    def _forget(self, request_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(request_id) is task:
            del self._tasks[request_id]

    async def _serve(self, request: pb.FetchLogs, send: Send) -> None:
        key = AttemptKey(request.workload_id, request.attempt)
        tail = request.tail if request.HasField("tail") else None
        lines: asyncio.Queue[str | None] = asyncio.Queue(READ_AHEAD_LINES)
        reader = asyncio.create_task(self._read(key, tail, request.follow, lines))
        try:
            while (first := await lines.get()) is not None:
                batch, size, ended = [first], len(first), False
                while len(batch) < MAX_CHUNK_LINES and size < MAX_CHUNK_CHARS and not lines.empty():
                    line = lines.get_nowait()
                    if line is None:
                        ended = True
                        break
                    batch.append(line)
                    size += len(line)
                send(_chunk(request.request_id, lines=batch))
                if ended:
                    break
            await reader  # raises what ended the read
        except AttemptNotFound as error:
            send(_chunk(request.request_id, error=pb.LogChunk.ERROR_NOT_FOUND, message=str(error)))
        except NotImplementedError as error:
            send(_chunk(request.request_id, error=pb.LogChunk.ERROR_NO_LOGS, message=str(error)))
        except BackendError as error:
            log.warning("logs of %s: %s", key, error)
            send(_chunk(request.request_id, error=pb.LogChunk.ERROR_BACKEND, message=str(error)))
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug in a backend must still end the reader's wait
            log.exception("logs of %s failed", key)
            send(_chunk(request.request_id, error=pb.LogChunk.ERROR_BACKEND, message=str(error)))
        else:
            send(_chunk(request.request_id))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(
        self, key: AttemptKey, tail: int | None, follow: bool, out: asyncio.Queue[str | None]
    ) -> None:
        """The backend's lines into `out`, then None; errors propagate to `_serve` after the None."""
        try:
            async for line in self._backend.logs(key, tail, follow):
                await out.put(line[:MAX_LINE_CHARS])
        except asyncio.CancelledError:
            raise  # the sender is gone: no one waits for the None
        except BaseException:
            await out.put(None)
            raise
        await out.put(None)


def _chunk(
    request_id: str,
    *,
    lines: list[str] | None = None,
    error: pb.LogChunk.Error = pb.LogChunk.ERROR_UNSPECIFIED,
    message: str = "",
) -> pb.AgentMessage:
    done = lines is None
    return pb.AgentMessage(
        logs=pb.LogChunk(
            request_id=request_id, lines=lines or [], done=done, error=error, message=message[:2000]
        )
    )
