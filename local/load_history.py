"""COPY INTO load metadata as Snowflake keeps it: per table, per file path and content checksum, for 64 days.

fakesnow's COPY keeps a history keyed by file name only (a changed file with the same name is never loaded
again, and the history outlives CREATE OR REPLACE) and reports skipped files as LOAD_SKIPPED rows. Snowflake:

- "Snowflake maintains detailed metadata for each table into which data is loaded, including: name of each
  file from which data was loaded, file size, ETag for the file, number of rows parsed in the file, timestamp
  of the last load for the file ... Load metadata expires after 64 days." A file is skipped as loaded before
  only if the same path with the same content (ETag / MD5 checksum) was loaded into that table within 64 days;
  a changed file with the same name loads again. https://docs.snowflake.com/en/user-guide/data-load-considerations-load
  (Loading older files) and https://docs.snowflake.com/en/sql-reference/sql/copy-into-table (FORCE,
  LOAD_UNCERTAIN_FILES).
- Already-loaded files are left out of COPY's result; when no file is loaded at all the result is the single
  column `status` with the row "Copy executed with 0 files processed.".
- Load status is uncertain for a file whose LAST_MODIFIED date is older than 64 days, that has no load record
  within 64 days, when the table's initial set of data was also loaded more than 64 days earlier: such files
  are skipped unless LOAD_UNCERTAIN_FILES = TRUE (or FORCE = TRUE).
- FORCE = TRUE loads every file regardless of the load metadata.
- The metadata belongs to the table: a table created again (CREATE OR REPLACE, DROP + CREATE) has none, and
  TRUNCATE TABLE deletes it ("TRUNCATE TABLE ... deletes the load metadata for the table",
  https://docs.snowflake.com/en/sql-reference/sql/truncate-table). A record is added only when the COPY
  commits (https://docs.snowflake.com/en/sql-reference/info-schema/load_history: "No record is added if the
  transaction is rolled back").

- INFORMATION_SCHEMA.LOAD_HISTORY shows loads "within the last 14 days" only (the load metadata above, which
  decides what COPY skips, is kept 64 days): https://docs.snowflake.com/en/sql-reference/info-schema/load_history
  ("retrieve the history of data loaded into tables using the COPY INTO <table> command within the last 14
  days"). fakesnow's view has no window and stamps LAST_LOAD_TIME with the wall clock; here it is stamped with
  the test clock and read through a 14-day window of the same clock.
- A file named in FILES = (...) that is not in the stage (deleted, expired, never written) is not an error:
  COPY works on the files its listing of the stage finds, so the missing file is left out of the result like a
  file skipped as loaded before, and a COPY that finds none of its files answers "Copy executed with 0 files
  processed.". Snowflake's own Spark connector, tested against live accounts, relies on this: it compares
  COPY's result with the files it asked for and re-runs COPY with FILES = (...) for the "missed files" the
  result leaves out, failing only when they are still left out
  (https://github.com/snowflakedb/spark-snowflake, src/main/scala/net/snowflake/spark/snowflake/io/
  StageWriter.scala, getCopyMissedFiles; PR #235 "Check missed files for COPY INTO TABLE"). fakesnow instead
  reads the missing file and fails the whole statement (000603 locally).

The service's notion of "now" for all of this is the wall clock plus an offset set by
`POST /admin/config {"clock_offset_days": D}` (reset by /admin/reset), so tests can age files and load records.
Tables are identified by DuckDB's table oid, which survives ALTER TABLE (also RENAME) and changes when the
table is created again.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import threading
import time
import types
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import fakesnow.copy_into as _copy_into
from sqlglot import exp

WINDOW_S = 64 * 86400
# INFORMATION_SCHEMA.LOAD_HISTORY's window: https://docs.snowflake.com/en/sql-reference/info-schema/load_history
HISTORY_VIEW_S = 14 * 86400
ZERO_FILES_SQL = "SELECT 'Copy executed with 0 files processed.' AS status"

_lock = threading.Lock()
_offset_days = 0.0
_local = threading.local()


@dataclass(frozen=True)
class _Record:
    checksum: str
    load_time: float


# (database, table oid) -> {file url: [records]}; (database, table oid) -> time of the table's first load
_history: dict[tuple[str, int], dict[str, list[_Record]]] = {}
_first_load: dict[tuple[str, int], float] = {}


# -- the clock ----------------------------------------------------------------------------------------------


def set_clock_offset_days(days: float) -> None:
    global _offset_days
    _offset_days = float(days)


def clock_offset_days() -> float:
    return _offset_days


def now() -> float:
    return time.time() + _offset_days * 86400


# -- statement bookkeeping (called by Engine._execute) ------------------------------------------------------


def begin() -> None:
    """A statement starts: nothing pending."""
    _local.pending = []


def statement_succeeded(duck: Any, sql: str, database: str | None, schema: str | None) -> None:
    """The statement committed: record its loads; TRUNCATE TABLE forgets the table's load metadata."""
    pending: list[tuple[tuple[str, int], str, str]] = getattr(_local, "pending", [])
    _local.pending = []
    t = now()
    with _lock:
        for key, url, checksum in pending:
            _history.setdefault(key, {}).setdefault(url, []).append(_Record(checksum, t))
            _first_load.setdefault(key, t)
    if sql.lstrip()[:8].upper() == "TRUNCATE":
        from fakesnow.dialect import parse  # noqa: PLC0415

        try:
            keys = [table_key(duck, t, database, schema) for t in parse(sql)[0].find_all(exp.Table)]
        except Exception:  # noqa: BLE001 - the statement succeeded; its table is what the next COPY finds
            return
        with _lock:
            for key in filter(None, keys):
                _history.pop(key, None)
                _first_load.pop(key, None)


def table_key(duck: Any, table: exp.Table, database: str | None, schema: str | None) -> tuple[str, int] | None:
    catalog, db, name = table.catalog or database, table.db or schema, table.name
    if not (catalog and db and name):
        return None
    rows = duck.execute(
        "SELECT database_name, schema_name, table_name, table_oid FROM duckdb_tables() "
        "WHERE lower(database_name) = lower(?) AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?)",
        [catalog, db, name],
    ).fetchall()
    exact = [r for r in rows if (r[0], r[1], r[2]) == (catalog, db, name)]
    row = (exact or rows or [None])[0]
    return (str(row[0]).upper(), int(row[3])) if row else None


# -- file metadata ------------------------------------------------------------------------------------------

_s3 = None


def _s3_client() -> Any:
    global _s3
    with _lock:
        if _s3 is None:
            import boto3  # noqa: PLC0415 - moto's dependency, only needed for S3 stages

            endpoint = os.environ.get("LOCAL_SF_S3_ENDPOINT", "127.0.0.1:4566")
            _s3 = boto3.client("s3", endpoint_url=f"http://{endpoint}", aws_access_key_id="test",
                               aws_secret_access_key="test", region_name="us-east-1")
        return _s3


NOT_IN_STAGE = "not in stage"


def file_meta(url: str) -> tuple[str, float] | str | None:
    """(checksum, LAST_MODIFIED as epoch seconds) of a staged file; NOT_IN_STAGE when the stage has no such file
    (see the module docstring); None when it cannot be read otherwise (COPY then reports the error itself)."""
    try:
        u = urlparse(url)
        if u.scheme in ("s3", "s3a"):
            head = _s3_client().head_object(Bucket=u.netloc, Key=u.path.lstrip("/"))
            return str(head["ETag"]).strip('"'), head["LastModified"].timestamp()
        path = u.path if u.scheme == "file" else url
        with open(path, "rb") as f:
            digest = hashlib.md5(f.read()).hexdigest()  # noqa: S324 - Snowflake's checksum for staged files
        return digest, os.stat(path).st_mtime
    except FileNotFoundError:
        return NOT_IN_STAGE
    except Exception as e:  # noqa: BLE001
        code = str(((getattr(e, "response", None) or {}).get("Error") or {}).get("Code", ""))
        return NOT_IN_STAGE if code in ("404", "NoSuchKey", "NotFound") else None


# -- the COPY wrapper ---------------------------------------------------------------------------------------


def _flag(param: exp.CopyParameter) -> bool:
    v = param.expression
    if isinstance(v, exp.Boolean):
        return bool(v.this)
    return isinstance(v, (exp.Var, exp.Literal, exp.Identifier)) and v.name.upper() == "TRUE"


def decide(key: tuple[str, int], url: str, checksum: str, last_modified: float, *, force: bool,
           load_uncertain: bool, at: float) -> bool:
    """Whether COPY loads the file (True) or leaves it out of the load and of the result (False)."""
    if force:
        return True
    with _lock:
        records = list(_history.get(key, {}).get(url, ()))
        first = _first_load.get(key)
    if any(r.checksum == checksum and at - r.load_time <= WINDOW_S for r in records):
        return False  # loaded before, same content, within 64 days
    if at - last_modified <= WINDOW_S:
        return True
    if first is None or at - first <= WINDOW_S:
        return True  # the table's initial set of data is recent: the status is known (not loaded)
    return load_uncertain


def copy_into(duck_conn: Any, current_database: str | None, current_schema: str | None, expr: exp.Copy,
              table_stages: Any, params: Any = None, *, _original: Any = _copy_into.copy_into) -> str:
    """fakesnow's copy_into with Snowflake's load metadata in front of it (see the module docstring)."""
    copy_params: list[exp.CopyParameter] = list(expr.args.get("params") or [])
    force = load_uncertain = False
    kept: list[exp.CopyParameter] = []
    files_param = None
    for p in copy_params:
        name = p.this.name.upper() if isinstance(p.this, exp.Var) else ""
        if name == "FORCE":
            force = _flag(p)
        elif name == "LOAD_UNCERTAIN_FILES":
            load_uncertain = _flag(p)
        else:
            if name == "FILES":
                files_param = p
            kept.append(p)
    force_true = exp.CopyParameter(this=exp.Var(this="FORCE"), expression=exp.Boolean(this=True))

    table = _copy_into._extract_table(expr.this)  # noqa: SLF001
    from_source = _copy_into._from_source(expr)  # noqa: SLF001
    source = (
        _copy_into.stage_url_from_var(from_source[1:], duck_conn, current_database, current_schema, table_stages,
                                      table)
        if from_source.startswith("@")
        else from_source
    )
    files = [lit.name for lit in files_param.find_all(exp.Literal)] if files_param else []
    if files:
        urls = _copy_into._source_urls(source, files)  # noqa: SLF001
    else:
        urls = _copy_into._source_glob(source, duck_conn)  # noqa: SLF001
        if not urls:
            duck_conn.execute(ZERO_FILES_SQL)
            return ZERO_FILES_SQL
        if not urlparse(source).scheme or not all(u.startswith(source) for u in urls):
            # a source whose files cannot be named relative to it: no load metadata kept (not used here)
            expr.set("params", [*kept, force_true] if force else kept)
            return _original(duck_conn, current_database, current_schema, expr, table_stages, params)
        files = [u[len(source):] for u in urls]

    key = table_key(duck_conn, table, current_database, table.db or current_schema)
    if key is None:  # no such table: fakesnow reports it
        return _original(duck_conn, current_database, current_schema, expr, table_stages, params)

    at = now()
    load: list[tuple[str, str, str | None]] = []  # (FILES entry, url, checksum)
    for name, url in zip(files, urls, strict=True):
        meta = file_meta(url)
        if meta == NOT_IN_STAGE:
            continue  # not in the stage listing: left out of the load and of the result
        if meta is None or isinstance(meta, str):
            load.append((name, url, None))  # unreadable: the load reports the error
        elif decide(key, url, meta[0], meta[1], force=force, load_uncertain=load_uncertain, at=at):
            load.append((name, url, meta[0]))
    if not load:
        duck_conn.execute(ZERO_FILES_SQL)
        return ZERO_FILES_SQL

    files_arg = exp.CopyParameter(
        this=exp.Var(this="FILES"), expression=exp.Tuple(expressions=[exp.Literal.string(n) for n, _, _ in load])
    )
    # FORCE for fakesnow: its own name-only history must not skip what the metadata above decided to load
    expr.set("params", [p for p in kept if p is not files_param] + [files_arg, force_true])
    sql = _original(duck_conn, current_database, current_schema, expr, table_stages, params)
    pending = getattr(_local, "pending", None)
    if pending is None:
        pending = _local.pending = []
    pending.extend((key, url, checksum) for _, url, checksum in load if checksum is not None)
    return sql


# -- INFORMATION_SCHEMA.LOAD_HISTORY: 14 days of the test clock ----------------------------------------------


class _ClockDatetime(datetime.datetime):
    """datetime whose now() is the service's clock: fakesnow stamps LAST_LOAD_TIME with it."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
        return datetime.datetime.fromtimestamp(now(), tz)


def history_view(expression: exp.Expression, *, _original: Any) -> exp.Expression:
    """fakesnow's information-schema redirect, with LOAD_HISTORY read through its 14-day window."""
    is_history = (
        isinstance(expression, exp.Table)
        and expression.db.upper() == "INFORMATION_SCHEMA"
        and expression.name.upper() == "LOAD_HISTORY"
    )
    if not is_history:
        return _original(expression)
    alias = expression.alias or "LOAD_HISTORY"
    table = _original(expression.copy())
    table.set("alias", None)
    since = datetime.datetime.fromtimestamp(now() - HISTORY_VIEW_S, datetime.UTC).isoformat()
    window = exp.GTE(
        this=exp.column("LAST_LOAD_TIME"),
        expression=exp.cast(exp.Literal.string(since), exp.DataType.build("TIMESTAMPTZ")),
    )
    return exp.select("*").from_(table).where(window).subquery(alias)


def install() -> None:
    """Route fakesnow's COPY through copy_into above; LOAD_HISTORY through its window."""
    import fakesnow.cursor as _cursor  # noqa: PLC0415
    import fakesnow.transforms as _transforms  # noqa: PLC0415

    import schema_evolution  # noqa: PLC0415

    # the files this COPY loads are decided here; schema_evolution loads them (MATCH_BY_COLUMN_NAME, evolution)
    _cursor.copy_into = functools.partial(copy_into, _original=schema_evolution.load)  # type: ignore[assignment]
    _copy_into.datetime = types.SimpleNamespace(datetime=_ClockDatetime, UTC=datetime.UTC)  # type: ignore[attr-defined]
    original = _transforms.information_schema_fs
    _transforms.information_schema_fs = lambda e: history_view(e, _original=original)  # type: ignore[assignment]
