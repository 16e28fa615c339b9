"""The writer's process (broker/store/writer.py, WriterChild): commits what the broker sends.

Run as `python -m broker.store.writer_child FD`, FD its end of a socket pair. It reads the
database URL, connects and says "ready", then reads (rows, holder) per commit and answers
each: None when committed, else ("lease", why) when the lease fence refused it or ("error",
the database's words). It ends when the broker closes its end, or dies (the socket then reads
as closed)."""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from broker.store.db import open_engine
from broker.store.lease import LeaseLost
from broker.store.writer import commit_rows


def serve(pipe: Connection) -> None:
    engine = open_engine(pipe.recv())
    try:
        # Connected and tuned before the broker serves, not at its first commit.
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as error:
        pipe.send(("error", str(error)))  # the broker starts another at its next commit
        return
    pipe.send("ready")
    try:
        while True:
            try:
                rows, holder = pipe.recv()
            except (EOFError, OSError):
                return  # the broker closed its end, or died
            answer: tuple[str, str] | None = None
            try:
                commit_rows(engine, rows, holder)
            except LeaseLost as error:
                answer = ("lease", str(error))
            except Exception as error:  # the broker logs it and rebuilds; this process goes on
                answer = ("error", str(error))
            try:
                pipe.send(answer)
            except OSError:
                return  # the broker died waiting: what it had not heard of, its successor reads
    finally:
        engine.dispose()


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
