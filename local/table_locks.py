"""Snowflake's per-table lock queue for UPDATE, DELETE and MERGE, in front of the service's engine lock.

Snowflake: "UPDATE, DELETE, and MERGE statements hold locks that generally prevent them from running in
parallel with other UPDATE, DELETE, and MERGE statements"; INSERT and COPY write new partitions and generally
do not wait for each other (Transactions, Resource locking:
https://docs.snowflake.com/en/sql-reference/transactions#resource-locking). A statement waits for the table's
lock, and when 20 statements already wait for that lock the next one is aborted at once with

  000625 (57014): Statement '<holder>' has locked table '<TABLE>' in transaction <txn> and this lock has not
  yet been released.
  Your statement '<id>' was aborted because the number of waiters for this lock exceeds the 20 statements limit.

(message as the connectors report it: https://blog.sorrowmonkey.com/snowflake-the-20-statements-limit and
https://resultant.com/blog/technology/overcoming-concurrent-write-limits-in-snowflake/; the SQL API's message
carries no "000625 (57014): " prefix).

The service runs DML and queries side by side on their own DuckDB connections, DDL alone (Engine.exec_lock,
local/exec_lock.py); this queue sits in front of it, per target table, and decides which statements wait and
which fail. With the timing model on, a locking statement keeps its lock for its modelled warehouse time
(local/warehouse_timing.py). To make the queue
observable, the fault `POST /admin/faults {"hold_table_lock_ms": N, "count": C}` makes each of the next C
locking statements keep its table lock N ms after it executed (as a long transaction would), outside the engine
lock, so statements on other tables run meanwhile. LOCK_TIMEOUT (43200 s by default) is not modelled: a waiter
waits until it gets the lock, is canceled, or reaches the request's `timeout` (000630, as the engine reports it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import snowflake.connector.errors as sf_errors
from sqlglot import exp

WAITERS_LIMIT = 20


def lock_target(sql: str, database: str | None, schema: str | None) -> tuple[str, str] | None:
    """(lock key, table name as Snowflake prints it) for UPDATE / DELETE / MERGE, else None."""
    head = sql.lstrip()[:6].upper()
    if head not in ("UPDATE", "DELETE", "MERGE "):
        return None
    from fakesnow.dialect import parse  # noqa: PLC0415

    try:
        stmt = parse(sql)[0]
    except Exception:  # noqa: BLE001 - execution reports the syntax error
        return None
    if not isinstance(stmt, (exp.Update, exp.Delete, exp.Merge)) or not isinstance(stmt.this, exp.Table):
        return None
    table = stmt.this

    def ident(part: exp.Expression | None, default: str | None) -> str:
        if isinstance(part, exp.Identifier):
            return part.this if part.quoted else part.this.upper()
        return default or ""

    name = ident(table.args.get("this"), None)
    db = ident(table.args.get("db"), schema)
    catalog = ident(table.args.get("catalog"), database)
    return f"{catalog}.{db}.{name}", name


class LockWaitersExceeded(sf_errors.ProgrammingError):
    pass


class TableLocks:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._holders: dict[str, tuple[str, int]] = {}  # key -> (holder handle, transaction id)
        self._waiters: dict[str, int] = {}
        self.aborts = 0  # statements refused with 000625, for tests of clients that retry them

    def waiting(self) -> dict[str, int]:
        with self._cv:
            return {k: v for k, v in self._waiters.items() if v}

    def held(self) -> dict[str, str]:
        with self._cv:
            return {k: h for k, (h, _) in self._holders.items()}

    @contextmanager
    def hold(self, key: str, table: str, handle: str, txn: int, canceled: Callable[[], bool],
             timeout_s: float | None = None, waited_s: float = 0.0) -> Iterator[None]:
        """Holds the table's lock for the block; waits in the table's queue first when another statement holds
        it. The wait ends on cancel and at the statement's timeout (000630, as the engine reports it)."""
        deadline = time.monotonic() + max(0.0, timeout_s - waited_s) if timeout_s else None
        with self._cv:
            if key in self._holders:
                if self._waiters.get(key, 0) >= WAITERS_LIMIT:
                    holder, holder_txn = self._holders[key]
                    self.aborts += 1
                    raise LockWaitersExceeded(
                        msg=f"Statement '{holder}' has locked table '{table}' in transaction {holder_txn} and this "
                        "lock has not yet been released.\nYour statement "
                        f"'{handle}' was aborted because the number of waiters for this lock exceeds the "
                        f"{WAITERS_LIMIT} statements limit.",
                        errno=625,
                        sqlstate="57014",
                    )
                self._waiters[key] = self._waiters.get(key, 0) + 1
                try:
                    while key in self._holders:
                        if canceled():
                            raise duckdb.InterruptException("canceled while waiting for a table lock")
                        if deadline is not None and time.monotonic() >= deadline:
                            raise sf_errors.ProgrammingError(
                                msg=f"Statement reached its statement or warehouse timeout of {timeout_s:g} "
                                "second(s) and was canceled.",
                                errno=630,
                                sqlstate="57014",
                            )
                        self._cv.wait(0.05)
                finally:
                    self._waiters[key] -= 1
            self._holders[key] = (handle, txn)
        try:
            yield
        finally:
            with self._cv:
                self._holders.pop(key, None)
                self._cv.notify_all()


@contextmanager
def statement_lock(locks: TableLocks, st: Any, take_fault: Callable[[str], dict | None]) -> Iterator[None]:
    """The table lock a statement holds while it runs (nothing for statements that take none)."""
    body = st.body
    target = lock_target(body.get("statement", ""), body.get("database"), body.get("schema"))
    if target is None:
        yield
        return
    key, table = target
    waited = (time.time() * 1000 - st.created_on) / 1000
    with locks.hold(key, table, st.handle, st.created_on * 1_000_000, lambda: st.cancel_requested,
                    body.get("timeout") or None, waited):
        yield
        if (fault := take_fault("hold_table_lock")) and st.state == "success":
            deadline = time.monotonic() + fault["hold_ms"] / 1000
            while time.monotonic() < deadline:
                time.sleep(0.01)
