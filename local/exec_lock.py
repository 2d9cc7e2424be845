"""The engine's lock over the one in-process DuckDB database: shared for DML and queries, exclusive for the rest.

Every statement runs on its own DuckDB connection (`duck_conn.cursor()`, which DuckDB makes safe to use from
its own thread: https://duckdb.org/docs/api/python/overview.html#using-connections-in-parallel-python-programs).
DuckDB runs transactions on different connections concurrently: appends never conflict, and writers to
different tables do not either (https://duckdb.org/docs/connect/concurrency). What may conflict, DDL and
fakesnow's metadata writes in its `_fs_global` database, runs alone. Two UPDATE/DELETE/MERGE on one table
never overlap: table_locks.py queues them first, as Snowflake does.

`with lock:` is the exclusive side (what every caller used before the lock had two sides), `with
lock.shared():` the shared one, and `with lock.suspended():` lets go of whatever this thread holds for the
block (a statement spending its modelled warehouse time, warehouse_timing.py) and takes it back after.
A waiting exclusive holder goes first: new shared holders wait behind it, so DDL is never starved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ExecLock:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0
        self._held = threading.local()  # "shared" | "exclusive" | None, this thread's side

    # -- exclusive --------------------------------------------------------------------------
    def acquire(self) -> None:
        with self._cv:
            self._exclusive_waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cv.wait()
            finally:
                self._exclusive_waiting -= 1
            self._exclusive = True
        self._held.side = "exclusive"

    def release(self) -> None:
        self._held.side = None
        with self._cv:
            self._exclusive = False
            self._cv.notify_all()

    def __enter__(self) -> "ExecLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- shared -----------------------------------------------------------------------------
    def acquire_shared(self) -> None:
        with self._cv:
            while self._exclusive or self._exclusive_waiting:
                self._cv.wait()
            self._shared += 1
        self._held.side = "shared"

    def release_shared(self) -> None:
        self._held.side = None
        with self._cv:
            self._shared -= 1
            self._cv.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    @contextmanager
    def holding(self, exclusive: bool) -> Iterator[None]:
        if exclusive:
            with self:
                yield
        else:
            with self.shared():
                yield

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Releases this thread's side of the lock for the block, then takes the same side again."""
        side = getattr(self._held, "side", None)
        if side == "exclusive":
            self.release()
        elif side == "shared":
            self.release_shared()
        try:
            yield
        finally:
            if side == "exclusive":
                self.acquire()
            elif side == "shared":
                self.acquire_shared()
