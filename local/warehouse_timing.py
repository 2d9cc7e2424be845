"""Snowflake's timing, as a labelled model the local service applies when asked (off by default).

Without it a statement costs what DuckDB takes (milliseconds) and a streaming append commits after
LOCAL_SF_STREAMING_COMMIT_DELAY_MS, so a load test measures DuckDB, not the write modes. With it on
(`LOCAL_SF_TIMING_MODEL=snowflake`, or `POST /admin/config {"timing_model": "snowflake"}`) the service
keeps the times below, each named after where its value comes from:

  [TX]        https://docs.snowflake.com/en/sql-reference/transactions#resource-locking  (UPDATE, DELETE
              and MERGE hold the table's lock while they run; INSERT and COPY write new partitions)
  [OVERVIEW]  https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-overview
              ("end-to-end ingest to query latencies within 5 to 10 seconds")
  [STREAMING] https://docs.snowflake.com/en/user-guide/snowpipe-streaming/data-load-snowpipe-streaming-overview
              ("as low as 5 second end-to-end ingest-to-query latency")
  [LAG]       https://docs.snowflake.com/en/user-guide/dynamic-tables-target-lag  ("Snowflake schedules
              refreshes slightly earlier to allow time for the refresh to complete"; minimum lag 60 s)
  [COMPILE]   https://openillumi.com/?p=80303 (a trivial query takes ~40 ms to compile, a one-row read
              100-300 ms end to end, even on an X-Large warehouse)
  [BLOCKED]   https://2binformed.com/article/the-hidden-snowflake-bottleneck-behind-parallel-upserts/
              (parallel upserts on one table wait on its lock: QUERY_HISTORY.TRANSACTION_BLOCKED_TIME)

Parameters (env LOCAL_SF_TIMING_<NAME upper-cased>, or `{"timing_params": {"<name>": value}}`):
  dml_fixed_ms [1000]      what one DML statement (MERGE, UPDATE, DELETE, INSERT, COPY, TRUNCATE)
                           costs on an X-Small warehouse before its rows: compile [COMPILE], scan of
                           the target's micro-partitions, write of the new ones and the commit. No
                           public benchmark gives this number for a 100-row MERGE; 1 s is our
                           estimate — calibrate it from your account's QUERY_HISTORY
                           (TOTAL_ELAPSED_TIME of the upsert's MERGEs, [BLOCKED]).
  dml_per_row_ms [0.05]    plus this per row the statement inserted, updated or deleted (an
                           X-Small MERGEs ~20,000 small rows a second; estimate, as above).
  ingest_ms [5000-10000]   a Snowpipe Streaming append commits (becomes queryable) after a delay
                           drawn uniformly from this range [OVERVIEW], [STREAMING]; channels commit
                           in parallel, each in order, never taking the table's lock [TX].
  append_ms [50]           the ingest host's answer to an append (accepted, not committed): one
                           in-region HTTPS round trip; estimate.
  refresh_fixed_ms [1000]  a Dynamic Table refresh, like a DML statement; refreshes start this much
                           (plus 1 s) before the target lag is up, so the content's lag stays under
                           it [LAG].

A DML statement spends its modelled cost after it executed and before it commits, holding its
table's lock (UPDATE/DELETE/MERGE, table_locks.py) but not the engine's exec lock: statements on
other tables, appends and commits go on meanwhile, as on a warehouse. Its rows become visible when
the cost is over. Only these costs are modelled: queries and DDL run at DuckDB's speed (the load test
does not compare them), and the warehouse is never full (no queuing on warehouse capacity).
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import asdict, dataclass, fields

MODEL_NAMES = ("off", "snowflake")


@dataclass
class Params:
    dml_fixed_ms: float = 1000.0
    dml_per_row_ms: float = 0.05
    ingest_min_ms: float = 5000.0
    ingest_max_ms: float = 10000.0
    append_ms: float = 50.0
    refresh_fixed_ms: float = 1000.0


def _env_params() -> Params:
    p = Params()
    for f in fields(Params):
        if f.name.startswith("ingest_"):
            continue
        var = f"LOCAL_SF_TIMING_{f.name.upper()}"
        if (raw := os.environ.get(var)) is not None:
            try:
                setattr(p, f.name, float(raw))
            except ValueError:
                raise SystemExit(f"{var} must be a number of milliseconds, not {raw!r}") from None
    if (raw := os.environ.get("LOCAL_SF_TIMING_INGEST_MS")) is not None:
        p.ingest_min_ms, p.ingest_max_ms = parse_range("LOCAL_SF_TIMING_INGEST_MS", raw)
    return p


def parse_range(name: str, raw: str) -> tuple[float, float]:
    """'min-max' or one number (ms)."""
    lo, _, hi = raw.partition("-")
    try:
        a, b = float(lo), float(hi or lo)
    except ValueError:
        raise ValueError(f"{name} must be 'min-max' in ms, not {raw!r}") from None
    if not 0 <= a <= b:
        raise ValueError(f"{name} must be 'min-max' with 0 <= min <= max, not {raw!r}")
    return a, b


class Model:
    """The switch and the parameters; `on` is read on every statement, so /admin/config applies at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to the environment's setting (LOCAL_SF_TIMING_MODEL [off])."""
        name = os.environ.get("LOCAL_SF_TIMING_MODEL", "off").strip().lower() or "off"
        if name not in MODEL_NAMES:
            raise SystemExit(f"LOCAL_SF_TIMING_MODEL must be one of {MODEL_NAMES}, not {name!r}")
        with self._lock:
            self.on = name == "snowflake"
            self.params = _env_params()

    def configure(self, body: dict) -> None:
        """The `timing_model` and `timing_params` of POST /admin/config (ValueError on a bad value)."""
        with self._lock:
            if "timing_model" in body:
                if body["timing_model"] not in MODEL_NAMES:
                    raise ValueError(f"timing_model must be one of {MODEL_NAMES}")
                self.on = body["timing_model"] == "snowflake"
            for name, value in (body.get("timing_params") or {}).items():
                if name == "ingest_ms":
                    self.params.ingest_min_ms, self.params.ingest_max_ms = (
                        parse_range("ingest_ms", value) if isinstance(value, str) else (float(value[0]), float(value[1]))
                    )
                elif name in {f.name for f in fields(Params)}:
                    setattr(self.params, name, float(value))
                else:
                    raise ValueError(f"unknown timing parameter {name!r}")

    def stats(self) -> dict:
        with self._lock:
            return {"model": "snowflake" if self.on else "off", **asdict(self.params)}

    # -- the costs ----------------------------------------------------------------------------
    def dml_seconds(self, rows: int) -> float:
        """A DML statement's modelled cost (0 with the model off)."""
        if not self.on:
            return 0.0
        return (self.params.dml_fixed_ms + self.params.dml_per_row_ms * max(0, rows)) / 1000

    def refresh_seconds(self) -> float:
        return self.params.refresh_fixed_ms / 1000 if self.on else 0.0

    def refresh_lead_seconds(self) -> float:
        """How long before its target lag is up a Dynamic Table's refresh starts [LAG]."""
        return self.refresh_seconds() + 1.0 if self.on else 0.0

    def append_seconds(self) -> float:
        return self.params.append_ms / 1000 if self.on else 0.0

    def commit_delay_seconds(self, configured_ms: tuple[int, int]) -> float:
        """When an accepted append commits: the model's ingest latency, else the configured delay."""
        lo, hi = (self.params.ingest_min_ms, self.params.ingest_max_ms) if self.on else configured_ms
        return random.uniform(lo, hi) / 1000
