"""List-then-watch for one Kubernetes resource, as client-go's reflector does, in one thread.

The thread lists (a full snapshot), then watches from the list's resourceVersion,
renewing the watch from the last version it saw each time the server ends it;
410 Gone (the version is too old) means list again. It never touches shared
state: every snapshot and event is handed to the event loop (`call_soon_threadsafe`),
so the backend's caches are read and written on the loop only. Objects stay
JSON dicts: turning thousands of pods into client models per heartbeat is the
cost a cache exists to avoid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("fedbroker.agent.kubernetes")

# (kind, payload): ("SYNC", [objects]) replaces everything; ("ADDED" | "MODIFIED" | "DELETED", object).
Deliver = Callable[[str, Any], None]
LIST_TIMEOUT_S = 60.0
RETRY_S = (0.5, 30.0)  # first and longest pause after an error


class Gone(Exception):
    """The watch's resourceVersion is no longer served (HTTP 410): list again."""


class Informer:
    def __init__(
        self,
        name: str,
        list_call: Callable[..., Any],
        deliver: Deliver,
        loop: asyncio.AbstractEventLoop,
        watch_timeout_s: int = 300,
    ) -> None:
        self.name = name
        self._list_call = list_call
        self._deliver = deliver
        self._loop = loop
        self._watch_timeout_s = watch_timeout_s
        self._stopped = threading.Event()
        self._response: Any = None
        self.lists = 0  # how many times it listed: tests and the bench read it
        self._thread = threading.Thread(target=self._run, name=f"watch {name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:  # unblock a read in progress
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.close()
        self._thread.join(timeout)

    def _run(self) -> None:
        pause = RETRY_S[0]
        version: str | None = None
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                pause = RETRY_S[0]
            except Gone:
                log.info("watch of %s expired (410 Gone); listing again", self.name)
                version = None
            except Exception as error:
                if self._stopped.is_set():
                    return
                if getattr(error, "status", None) == 410:
                    version = None
                    continue
                if "Timeout" in type(error).__name__:  # an idle watch outlived its read timeout: renew it
                    continue
                log.warning("watch of %s failed, retrying in %.1fs: %s", self.name, pause, _short(error))
                self._stopped.wait(pause)
                pause = min(pause * 2, RETRY_S[1])

    def _list(self) -> str:
        response = self._list_call(_preload_content=False, _request_timeout=LIST_TIMEOUT_S)
        body = json.loads(response.data)
        self.lists += 1
        self._send("SYNC", body.get("items") or [])
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        """Follow events from `version` until the server ends the watch; the last version seen."""
        response = self._list_call(
            watch=True,
            resource_version=version or None,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout_s,
            _preload_content=False,
            _request_timeout=(10, self._watch_timeout_s + 30),  # the server should end it first
        )
        self._response = response
        try:
            for line in response:
                if self._stopped.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error: {obj.get('message') or obj}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._send(kind, obj)
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()
        return version

    def _send(self, kind: str, payload: Any) -> None:
        if not self._stopped.is_set():
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
                self._loop.call_soon_threadsafe(self._deliver, kind, payload)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"
