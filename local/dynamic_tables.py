"""Dynamic Tables: materialized at creation, refreshed later, never current by themselves.

Snowflake's rules, as this service keeps them:
- `CREATE [OR REPLACE] DYNAMIC TABLE <name> TARGET_LAG = '<n> seconds|minutes|hours|days' |
  DOWNSTREAM WAREHOUSE = <wh> AS <query>`; TARGET_LAG and WAREHOUSE are required
  (https://docs.snowflake.com/en/sql-reference/sql/create-dynamic-table).
- A TARGET_LAG under one minute is an error for a new or replaced table (behaviour change 1247,
  https://docs.snowflake.com/en/release-notes/bcr-bundles/2023_06/bcr-1247).
- The table is filled once at creation (the default `INITIALIZE = ON_CREATE`, same page) and then
  refreshed by Snowflake on its own schedule so that its content lags the base tables by about the
  target lag; lag is a target, not a guarantee
  (https://docs.snowflake.com/en/user-guide/dynamic-tables-target-lag). Here a background thread
  refreshes each table once its target lag has passed since its last refresh; a reader between two
  refreshes sees the older state, as on Snowflake.
- `ALTER DYNAMIC TABLE <name> REFRESH` refreshes at once
  (https://docs.snowflake.com/en/sql-reference/sql/alter-dynamic-table): the test hook, and what a
  user runs to see the latest state now. `ALTER DYNAMIC TABLE <name> SET TARGET_LAG = ...` and
  `DROP DYNAMIC TABLE <name>` are served too. DOWNSTREAM tables refresh only when asked.

A refresh replaces the table's content with the query's result (`CREATE OR REPLACE TABLE ... AS`):
Snowflake's incremental refresh gives the same rows.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import strict_sql

MIN_LAG_SECONDS = 60
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}

CREATE_RE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?DYNAMIC\s+TABLE\s+(?P<name>\S+)\s+(?P<params>.*?)\s+AS\s+(?P<query>SELECT\b.*)$",
    re.IGNORECASE | re.DOTALL,
)
ALTER_RE = re.compile(
    r"^\s*ALTER\s+DYNAMIC\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<name>\S+)\s+(?P<action>REFRESH|SET\s+TARGET_LAG\s*=\s*(?P<lag>'[^']*'|DOWNSTREAM))\s*;?\s*$",
    re.IGNORECASE,
)
DROP_RE = re.compile(r"^\s*DROP\s+DYNAMIC\s+TABLE\s+(?P<exists>IF\s+EXISTS\s+)?(?P<name>\S+)\s*;?\s*$", re.IGNORECASE)
LAG_RE = re.compile(r"\bTARGET_LAG\s*=\s*('(?P<text>[^']*)'|(?P<downstream>DOWNSTREAM))", re.IGNORECASE)
LAG_TEXT_RE = re.compile(r"^\s*(?P<n>\d+)\s*(?P<unit>second|minute|hour|day)s?\s*$", re.IGNORECASE)


def compilation_error(message: str) -> strict_sql.StrictError:
    return strict_sql.StrictError("001003", "42000", f"SQL compilation error: {message}")


def lag_seconds(params: str) -> float | None:
    """The target lag in seconds, None for DOWNSTREAM; refuses a missing or sub-minute lag."""
    m = LAG_RE.search(params)
    if not m:
        raise compilation_error("Dynamic table requires the TARGET_LAG parameter.")
    if m["downstream"]:
        return None
    text = LAG_TEXT_RE.match(m["text"])
    if not text:
        raise compilation_error(f"invalid value ['{m['text']}'] for parameter 'TARGET_LAG'")
    seconds = int(text["n"]) * UNITS[text["unit"].lower()]
    if seconds < MIN_LAG_SECONDS:
        raise compilation_error("Target lag must be at least 1 minute.")
    return float(seconds)


def key(name: str, database: str | None, schema: str | None) -> tuple[str, ...]:
    """(database, schema, table) of a possibly qualified, possibly quoted name, filled from the
    session's database and schema. Compared upper-cased: the registry only has to find the
    table a statement names, and two Dynamic Tables differing only in quoted case are not made
    by this project."""
    parts = re.findall(r'"((?:[^"]|"")*)"|([^."]+)', name)
    names = [q.replace('""', '"') if q else u for q, u in parts]
    if len(names) < 3:
        names = [database or "", schema or ""][: 3 - len(names)] + names
    return tuple(n.upper() for n in names)


@dataclass
class DynamicTable:
    name: str  # as written in the CREATE statement
    database: str | None
    schema: str | None
    query: str
    lag: float | None
    refreshed_at: float = 0.0
    refreshes: int = 0


class DynamicTables:
    """The registry, and the statement each Dynamic Table statement becomes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tables: dict[tuple[str, str, str], DynamicTable] = {}

    def rewrite(self, sql: str, database: str | None, schema: str | None) -> str:
        """The SQL the engine runs for `sql` (unchanged unless it is a Dynamic Table statement).
        A CREATE and a REFRESH become `CREATE OR REPLACE TABLE <name> AS <query>`."""
        if m := CREATE_RE.match(sql):
            if not re.search(r"\bWAREHOUSE\s*=", m["params"], re.IGNORECASE):
                raise compilation_error("Dynamic table requires the WAREHOUSE parameter.")
            table = DynamicTable(m["name"], database, schema, m["query"], lag_seconds(m["params"]))
            with self.lock:
                self.tables[key(m["name"], database, schema)] = table
            return self.refresh_sql(table)
        if m := ALTER_RE.match(sql):
            return self.alter(m, database, schema)
        if m := DROP_RE.match(sql):
            with self.lock:
                self.tables.pop(key(m["name"], database, schema), None)
            return f"DROP TABLE {'IF EXISTS ' if m['exists'] else ''}{m['name']}"
        return sql

    def alter(self, m: re.Match, database: str | None, schema: str | None) -> str:
        with self.lock:
            table = self.tables.get(key(m["name"], database, schema))
        if table is None:
            raise strict_sql.StrictError(
                "002003", "02000", f"SQL compilation error:\nDynamic table '{m['name']}' does not exist or not authorized."
            )
        if m["lag"] is not None:
            table.lag = lag_seconds(f"TARGET_LAG = {m['lag']}")
            return "SELECT 'Statement executed successfully.' AS \"status\""
        return self.refresh_sql(table)

    @staticmethod
    def refresh_sql(table: DynamicTable) -> str:
        table.refreshed_at = time.monotonic()
        table.refreshes += 1
        return f"CREATE OR REPLACE TABLE {table.name} AS {table.query}"

    def due(self, lead: float = 0.0) -> list[DynamicTable]:
        """Tables whose target lag has passed since their last refresh, less `lead` seconds: with the
        timing model on a refresh starts early enough to finish within the lag (local/warehouse_timing.py;
        "Snowflake schedules refreshes slightly earlier to allow time for the refresh to complete",
        https://docs.snowflake.com/en/user-guide/dynamic-tables-target-lag)."""
        now = time.monotonic()
        with self.lock:
            return [t for t in self.tables.values() if t.lag is not None and now - t.refreshed_at >= t.lag - lead]

    def start(self, run: Callable[[DynamicTable, str], Any], lead: Callable[[], float] = lambda: 0.0,
              every: float = 1.0) -> None:
        """Refreshes due tables in the background; `run(table, sql)` executes the refresh in the
        table's database and schema (errors are the refresher's to log: the table keeps its
        older content, as a failed refresh leaves it on Snowflake)."""

        def loop() -> None:
            while True:
                time.sleep(every)
                for table in self.due(lead()):
                    run(table, self.refresh_sql(table))

        threading.Thread(target=loop, name="dynamic-table-refresh", daemon=True).start()
