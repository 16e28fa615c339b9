"""A TCP proxy the soak test controls: it forwards bytes, or it partitions.

A partition is a black hole, as a cut link or a dropped route is: bytes already in
flight are discarded and new connections are held open but go nowhere, so the ends
learn of it only from their own timeouts and keepalives. On heal, the connections
held through the partition are closed (as their TCP timers would close them) and
new ones are forwarded again.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket | None]] = set()
        self._partitioned = False
        self._closed = False
        threading.Thread(target=self._accept, name=f"proxy-{self.address}", daemon=True).start()

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def partition(self) -> None:
        with self._lock:
            self._partitioned = True

    def heal(self) -> None:
        with self._lock:
            self._partitioned = False
            held, self._pairs = self._pairs, set()
        for pair in held:
            _close(*pair)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.heal()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._partitioned:
                    self._pairs.add((client, None))  # held open, never answered
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()  # the target is down: refused, as a direct dial would be
                continue
            upstream.settimeout(None)
            pair = (client, upstream)
            with self._lock:
                self._pairs.add(pair)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, pair), daemon=True).start()

    def _pump(
        self, source: socket.socket, sink: socket.socket, pair: tuple[socket.socket, socket.socket]
    ) -> None:
        try:
            while data := source.recv(65536):
                if not self._partitioned:  # in a partition bytes vanish
                    sink.sendall(data)
        except OSError:
            pass
        if not self._partitioned:
            with self._lock:
                self._pairs.discard(pair)
            _close(*pair)


def _close(*sockets: socket.socket | None) -> None:
    for sock in sockets:
        if sock is None:
            continue
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
