#!/usr/bin/env python3
"""A local stand-in for Snowflake's SQL API v2, executing SQL with fakesnow (DuckDB) in-process.

Endpoints (see local/specs/snowflake-sqlapi.yaml for the /api/v2 ones):
  POST /api/v2/statements[?requestId=<uuid>&retry=true&async=true]
  GET  /api/v2/statements/<handle>[?partition=n]
  POST /api/v2/statements/<handle>/cancel
  POST /v1/data/pipes/<db.schema.pipe>/insertFiles, GET .../insertReport, GET .../loadHistoryScan
       (the Snowpipe REST API, local/snowpipe_api.py; pipes from CREATE PIPE)
  GET  /healthz
  POST /admin/faults   {"status": 429|500|503|504, "count": N} | {"delay_ms": D, "count": N}
                       | {"drop_connection": true, "count": N} | {"async_after_ms": X}
                       | {"hold_table_lock_ms": H, "count": N}: each of the next N UPDATE/DELETE/MERGE keeps
                         its table lock H ms after executing (see local/table_locks.py)
                       | {"streaming_status": 408|409|429|500|503, "count": N}
                       | {"streaming_drop_connection": true, "count": N, "after_apply": true|false}
                       | {"invalidate_channel": "<name>"}, each optionally scoped {"channel": c, "pipe": p}
                         (the Snowpipe Streaming endpoints, local/streaming_api.py)
                       | {"snowpipe_status": 429|500|503, "count": N}
                       | {"snowpipe_drop_connection": true, "count": N, "after_apply": true|false}
                       | {"snowpipe_fail_load": "<path substring>", "count": N}, each optionally {"pipe": "DB.SCHEMA.P"}
                         (the Snowpipe REST endpoints, local/snowpipe_api.py)
  POST /admin/config   {"partition_rows": N, "async_after_ms": X, "clock_offset_days": D,
                        "streaming_commit_delay_ms": [min, max], "streaming_requests_per_second": R,
                        "streaming_channels_per_pipe": N, "streaming_hostname_format": "text"|"json",
                        "snowpipe_load_delay_ms": [min, max], "snowpipe_requests_per_second": R,
                        "snowpipe_report_max_events": N}
                       clock_offset_days shifts the "now" of COPY load metadata (64-day expiry, load
                       uncertainty; see local/load_history.py)
                       | {"timing_model": "snowflake"|"off", "timing_params": {"dml_fixed_ms": F, ...}}
                       Snowflake's timing as a labelled model (local/warehouse_timing.py)
  POST /admin/reset    clears faults, counters and config overrides (the clock offset too; load metadata and
                       streaming channels stay: they belong to the tables)
  GET  /admin/stats    {"submissions": n, "executions": n, "by_request_id": {"<uuid>": executions},
                        "clock_offset_days": D, "table_locks": {"held": {table: handle}, "waiting": {table: n}, "aborts": n},
                        "timing": {"model": "off"|"snowflake", <parameters>},
                        "streaming": {"appends_accepted": n, "appends_committed": n, "appends_discarded": n,
                                      "channels": {"DB.SCHEMA.PIPE.CHANNEL": {... same, "pending": n}}, ...},
                        "snowpipe": {"requests", "files_queued", "files_loaded", "files_failed", "duplicates_skipped",
                                     "pipes": {"DB.SCHEMA.PIPE": {... same, "queued": n}}, ...}}

Snowflake behaviours kept in their own modules:
  local/session_context.py  database/schema/warehouse/role resolved case-sensitively, as Snowflake does
  local/load_history.py     COPY load metadata by (path, checksum), 64 days, FORCE, LOAD_UNCERTAIN_FILES
  local/table_locks.py      per-table lock queue of UPDATE/DELETE/MERGE, 000625 past 20 waiters
  local/exec_lock.py        DML and queries side by side on their own DuckDB connections, DDL alone
  local/warehouse_timing.py Snowflake's timing (MERGE/COPY cost under the table lock, ingest latency, refresh
                            schedule), a labelled model, off unless LOCAL_SF_TIMING_MODEL=snowflake
  local/streaming_api.py    the Snowpipe Streaming REST API (channels, offset tokens) on the same port
  local/snowpipe_api.py     pipes (CREATE/DROP/SHOW/DESC PIPE) and the Snowpipe REST API (insertFiles, ...)

Environment (defaults in brackets):
  LOCAL_SF_HOST [127.0.0.1]  LOCAL_SF_PORT [8787]
  LOCAL_SF_ACCOUNT [LOCALTEST]  LOCAL_SF_USER [LOADER]
  LOCAL_SF_PUBLIC_KEY_FILE [local/keys/snowflake_test_key.pub]  LOCAL_SF_TOKEN [local-dev-token]
  LOCAL_SF_ASYNC_AFTER_MS [45000]  LOCAL_SF_PARTITION_ROWS [1000]  LOCAL_SF_VALIDATE [0]
  LOCAL_SF_S3_ENDPOINT [127.0.0.1:4566]  LOCAL_SF_SPEC [local/specs/snowflake-sqlapi.yaml]
  LOCAL_SF_WAREHOUSES [COMPUTE_WH,WH,LOCAL_WH]  LOCAL_SF_DEFAULT_WAREHOUSE [COMPUTE_WH]
  LOCAL_SF_ROLES [LOADER_ROLE,PUBLIC]  (names as SHOW returns them; the request fields are case-sensitive)
  LOCAL_SF_STREAMING_COMMIT_DELAY_MS [300-1500]  an accepted streaming append commits after a delay drawn from it
  LOCAL_SF_STREAMING_REQUESTS_PER_SECOND [10]  LOCAL_SF_STREAMING_CHANNELS_PER_PIPE [2000]  (Snowflake's limits)
  LOCAL_SF_SNOWPIPE_LOAD_DELAY_MS [1000-5000]  a file queued by insertFiles loads after a delay drawn from it
  LOCAL_SF_SNOWPIPE_REQUESTS_PER_SECOND [20]  Snowpipe REST requests per second per pipe, then 429
  LOCAL_SF_TIMING_MODEL [off]  `snowflake` turns the timing model on; its parameters LOCAL_SF_TIMING_DML_FIXED_MS
  [1000], _DML_PER_ROW_MS [0.05], _INGEST_MS [5000-10000], _APPEND_MS [50], _REFRESH_FIXED_MS [1000]
"""

from __future__ import annotations

import base64
import copy
import datetime
import decimal
import hashlib
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb

# fakesnow 0.12.1 references duckdb.ResourceInUseException, which duckdb 1.5.5 does not have.
if not hasattr(duckdb, "ResourceInUseException"):

    class ResourceInUseException(duckdb.Error):  # type: ignore[misc]
        pass

    duckdb.ResourceInUseException = ResourceInUseException  # type: ignore[attr-defined]

import duckdb_extension_httpfs  # noqa: E402
import jsonschema  # noqa: E402
import jwt  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import snowflake.connector.errors as sf_errors  # noqa: E402
import yaml  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from fakesnow.cursor import FakeSnowflakeCursor  # noqa: E402
from fakesnow.instance import FakeSnow  # noqa: E402
from sqlglot import exp  # noqa: E402

# Atomic statements: DML runs inside an explicit DuckDB transaction, begun lazily just before the
# first sub-statement that is not a CREATE. fakesnow splits MERGE into CREATE TEMPORARY TABLE
# merge_candidates + mutations; that CREATE also writes fakesnow metadata in another attached
# database, which DuckDB refuses inside a transaction that writes the target database.
_orig_cursor_execute = FakeSnowflakeCursor._execute  # noqa: SLF001


def _cursor_execute_with_lazy_begin(self: Any, transformed: Any, params: Any = None) -> None:
    if getattr(self, "_local_lazy_begin", False) and not isinstance(transformed, exp.Create):
        self._duck_conn.begin()  # noqa: SLF001
        self._local_lazy_begin = False
        self._local_in_tx = True
    return _orig_cursor_execute(self, transformed, params)


FakeSnowflakeCursor._execute = _cursor_execute_with_lazy_begin  # noqa: SLF001

# DuckDB reads `name=value/` path segments as hive partitions and adds them as columns, so a file
# under the orchestrator's field partition (`…/sensorId=6/…`) would load one column too many.
# Snowflake's COPY never does that: switch it off in the readers fakesnow generates.
import fakesnow.copy_into as _copy_into  # noqa: E402
from sqlglot import exp as _exp  # noqa: E402


def _without_hive_partitioning(read_expression: Any) -> Any:
    def wrapped(self: Any, url: str) -> Any:
        expr = read_expression(self, url)
        expr.append("expressions", self.make_eq("hive_partitioning", False))
        return expr

    return wrapped


for _reader in (_copy_into.ReadCSV, _copy_into.ReadJSON, _copy_into.ReadParquet):
    _reader.read_expression = _without_hive_partitioning(_reader.read_expression)

# Snowflake's data refusals that DuckDB does not make, as Snowflake words them: local/strict_sql.py.
import strict_sql  # noqa: E402

strict_sql.install()

# Table schema evolution and COPY ... MATCH_BY_COLUMN_NAME from JSON: local/schema_evolution.py.
import schema_evolution  # noqa: E402

schema_evolution.install()

# Snowflake's stateful behaviours, each in its own module: case-sensitive request context, COPY load metadata
# by (path, checksum) for 64 days, the per-table DML lock queue, Dynamic Tables refreshed after their lag.
import dynamic_tables  # noqa: E402
import exec_lock  # noqa: E402
import load_history  # noqa: E402
import session_context  # noqa: E402
import snowpipe_api  # noqa: E402
import streaming_api  # noqa: E402
import table_locks  # noqa: E402
import warehouse_timing  # noqa: E402

load_history.install()

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

ASYNC_MESSAGE = (
    "Asynchronous execution in progress. Use provided query id to perform query monitoring and management."
)
OK_MESSAGE = "Statement executed successfully."
# fakesnow cannot parse these; they are answered with a status row and logged as skipped.
NOP_RE = re.compile(
    r"^\s*(CREATE|ALTER|DROP|EXECUTE|DESCRIBE|DESC|SHOW)\s+(OR\s+REPLACE\s+)?(IF\s+(NOT\s+)?EXISTS\s+)?"
    r"(STREAMS?|TASKS?)\b",
    re.IGNORECASE,
)
# statements run inside an explicit DuckDB transaction (they write only to the target database;
# DuckDB refuses a transaction writing to two attached databases, which fakesnow's DDL does)
TX_RE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|MERGE|COPY|TRUNCATE)\b", re.IGNORECASE)
# statements that run beside each other under the shared side of the exec lock (local/exec_lock.py); the rest
# (DDL, COPY with its schema evolution and load metadata, SHOW, ...) run alone
SHARED_RE = re.compile(r"^\s*\(?\s*(SELECT|WITH|INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def log(msg: str) -> None:
    print(f"{datetime.datetime.now(datetime.UTC).strftime('%H:%M:%S.%f')[:-3]} {msg}", file=sys.stderr, flush=True)


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------
# OpenAPI spec -> JSON schemas
# ---------------------------------------------------------------------------------------------


def find_spec() -> Path:
    """The vendored copy: nothing the project runs may read outside its own checkout."""
    path = Path(os.environ.get("LOCAL_SF_SPEC") or HERE / "specs/snowflake-sqlapi.yaml")
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (LOCAL_SF_SPEC overrides the vendored local/specs copy)")
    return path


def openapi_to_jsonschema(node: Any, components: dict) -> Any:
    """Inline $refs and translate OpenAPI 3.0 `nullable` into JSON-schema null types."""
    if isinstance(node, list):
        return [openapi_to_jsonschema(n, components) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return openapi_to_jsonschema(components[name], components)
    out = {}
    for k, v in node.items():
        if k in ("example", "nullable", "description", "format"):
            continue
        if k == "properties":
            out[k] = {pk: openapi_to_jsonschema(pv, components) for pk, pv in v.items()}
        else:
            out[k] = openapi_to_jsonschema(v, components)
    if node.get("nullable") is True:
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


class Spec:
    def __init__(self, path: Path):
        doc = yaml.safe_load(path.read_text())
        comps = doc["components"]["schemas"]
        post = doc["paths"]["/api/v2/statements"]["post"]
        self.request = openapi_to_jsonschema(post["requestBody"]["content"]["application/json"]["schema"], comps)
        self.responses: dict[tuple[str, int], dict] = {}
        for op, path_key, method in (
            ("submit", "/api/v2/statements", "post"),
            ("get", "/api/v2/statements/{statementHandle}", "get"),
            ("cancel", "/api/v2/statements/{statementHandle}/cancel", "post"),
        ):
            for status, resp in doc["paths"][path_key][method]["responses"].items():
                if "content" in resp:
                    schema = resp["content"]["application/json"]["schema"]
                    self.responses[(op, int(status))] = openapi_to_jsonschema(schema, comps)

    def check_response(self, op: str, status: int, body: Any) -> str | None:
        """Returns an error string if body does not validate, None if valid or no schema exists."""
        schema = self.responses.get((op, status))
        if schema is None:
            return None
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
        if errors:
            e = errors[0]
            return f"{op} {status}: {e.message} at {'/'.join(map(str, e.absolute_path))}"
        return None


# ---------------------------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------------------------


class AuthError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Auth:
    def __init__(self) -> None:
        self.account = os.environ.get("LOCAL_SF_ACCOUNT", "LOCALTEST").upper()
        self.user = os.environ.get("LOCAL_SF_USER", "LOADER").upper()
        self.token = os.environ.get("LOCAL_SF_TOKEN", "local-dev-token")
        key_file = Path(os.environ.get("LOCAL_SF_PUBLIC_KEY_FILE", HERE / "keys/snowflake_test_key.pub"))
        self.public_key = serialization.load_pem_public_key(key_file.read_bytes())
        der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()

    def check(self, headers: Any) -> None:
        authz = headers.get("Authorization") or ""
        if not authz.startswith("Bearer ") or not authz[7:].strip():
            raise AuthError("390101", "Authorization header not found or not of the form 'Bearer <token>'.")
        token = authz[7:].strip()
        kind = (headers.get("X-Snowflake-Authorization-Token-Type") or "OAUTH").strip().upper()
        if kind == "KEYPAIR_JWT":
            try:
                claims = jwt.decode(
                    token,
                    self.public_key,  # type: ignore[arg-type]
                    algorithms=["RS256"],
                    options={"require": ["exp", "iat", "iss", "sub"], "verify_aud": False},
                    leeway=0,
                )
            except jwt.ExpiredSignatureError:
                raise AuthError("390144", "JWT token is invalid: expired.") from None
            except jwt.PyJWTError as e:
                raise AuthError("390144", f"JWT token is invalid: {type(e).__name__}.") from None
            expected_sub = f"{self.account}.{self.user}"
            if str(claims["sub"]).upper() != expected_sub:
                raise AuthError("390144", "JWT token is invalid: wrong subject.")
            iss_who, _, iss_fp = str(claims["iss"]).partition(".SHA256:")
            if iss_who.upper() != expected_sub or f"SHA256:{iss_fp}" != self.fingerprint:
                raise AuthError("390144", "JWT token is invalid: issuer does not match the public key fingerprint.")
            if int(claims["exp"]) - int(claims["iat"]) > 3600:
                raise AuthError("390144", "JWT token is invalid: lifetime exceeds 3600 seconds.")
        elif kind in ("OAUTH", "PROGRAMMATIC_ACCESS_TOKEN"):
            if token != self.token:
                raise AuthError("390303", "Invalid OAuth access token.")
        else:
            raise AuthError("390101", f"Unsupported authorization token type {kind[:40]!r}.")


# ---------------------------------------------------------------------------------------------
# Bindings and result conversion
# ---------------------------------------------------------------------------------------------


class BindingError(Exception):
    pass


def _epoch_to_datetime(value: str, unit_per_sec: int) -> datetime.datetime:
    whole = int(value)
    secs, frac = divmod(whole, unit_per_sec)
    micros = frac * 1_000_000 // unit_per_sec
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=secs, microseconds=micros)


def convert_binding(pos: str, b: Any) -> Any:
    if not isinstance(b, dict) or "type" not in b or "value" not in b:
        raise BindingError(f"Binding {pos} must be an object with 'type' and 'value'.")
    typ, value = str(b["type"]).upper(), b["value"]
    if value is None:
        return None  # typed nulls upset fakesnow: bind as an untyped NULL
    if isinstance(value, list):
        raise BindingError("Array bindings are not supported by the local stack.")
    value = str(value)
    try:
        if typ in ("TEXT", "VARIANT", "OBJECT", "ARRAY", "ANY"):
            return value
        if typ == "FIXED":
            d = decimal.Decimal(value)
            return int(d) if d == d.to_integral_value() else d
        if typ == "REAL":
            return float(value)
        if typ == "BOOLEAN":
            low = value.strip().lower()
            if low in ("true", "1", "t", "yes"):
                return True
            if low in ("false", "0", "f", "no"):
                return False
            raise ValueError(value)
        if typ == "BINARY":
            return bytes.fromhex(value)
        if typ == "DATE":
            # the connectors send milliseconds since the epoch; ISO dates are accepted too
            if re.fullmatch(r"-?\d+", value):
                return _epoch_to_datetime(value, 1000).date()
            return datetime.date.fromisoformat(value)
        if typ == "TIME":
            if re.fullmatch(r"\d+", value):
                return (datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=int(value) // 1000)).time()
            return datetime.time.fromisoformat(value)
        if typ in ("TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ", "TIMESTAMP"):
            # nanoseconds since the epoch ("<ns> <offset+1440>" for TZ), or ISO 8601
            m = re.fullmatch(r"(-?\d+)(?:\s+(\d+))?", value.strip())
            if m:
                dt = _epoch_to_datetime(m[1], 1_000_000_000)
                if typ == "TIMESTAMP_NTZ":
                    return dt
                tz = datetime.timezone(datetime.timedelta(minutes=int(m[2]) - 1440)) if m[2] else datetime.UTC
                return dt.replace(tzinfo=datetime.UTC).astimezone(tz)
            dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if typ == "TIMESTAMP_NTZ" and dt.tzinfo is not None:
                dt = dt.replace(tzinfo=None)
            return dt
    except (ValueError, ArithmeticError) as e:
        if (refused := strict_sql.binding_error(typ, value)) is not None:
            raise refused from e  # a date out of range is a SQL error, as in Snowflake
        raise BindingError(f"Binding {pos}: invalid {typ} value.") from e
    raise BindingError(f"Binding {pos}: unsupported type {typ}.")


def convert_bindings(bindings: dict | None) -> list | None:
    if not bindings:
        return None
    if not all(re.fullmatch(r"[1-9]\d*", k) for k in bindings):
        raise BindingError("Only positional bindings ('1', '2', ...) are supported by the local stack.")
    n = len(bindings)
    if sorted(int(k) for k in bindings) != list(range(1, n + 1)):
        raise BindingError("Positional bindings must be numbered 1..N without gaps.")
    return [convert_binding(str(i), bindings[str(i)]) for i in range(1, n + 1)]


def _duck_to_sf(duck_type: str | None, arrow_type: pa.DataType) -> dict:
    """Snowflake rowType entry (without name) from a DuckDB DESCRIBE type, falling back on arrow."""
    t = (duck_type or "").upper()
    col = {"type": "TEXT", "length": 0, "precision": 0, "scale": 0, "byteLength": None}
    if t == "JSON":
        col["type"] = "VARIANT"
    elif t.startswith("DECIMAL") or pa.types.is_decimal(arrow_type):
        col.update(type="FIXED", precision=getattr(arrow_type, "precision", 38), scale=getattr(arrow_type, "scale", 0))
    elif pa.types.is_integer(arrow_type):
        col.update(type="FIXED", precision=38, scale=0)
    elif pa.types.is_floating(arrow_type):
        col["type"] = "REAL"
    elif pa.types.is_boolean(arrow_type):
        col["type"] = "BOOLEAN"
    elif pa.types.is_date(arrow_type):
        col["type"] = "DATE"
    elif pa.types.is_time(arrow_type):
        col.update(type="TIME", scale=9)
    elif pa.types.is_timestamp(arrow_type):
        col.update(type="TIMESTAMP_TZ" if arrow_type.tz else "TIMESTAMP_NTZ", scale=9)
    elif pa.types.is_binary(arrow_type) or pa.types.is_large_binary(arrow_type):
        col.update(type="BINARY", length=8388608, byteLength=8388608)
    elif pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        col["type"] = "ARRAY"
    elif pa.types.is_struct(arrow_type) or pa.types.is_map(arrow_type):
        col["type"] = "OBJECT"
    else:
        col.update(type="TEXT", length=16777216, byteLength=16777216)
    if col["byteLength"] is None:
        del col["byteLength"]
    return col


def _fmt_epoch(value: int, unit_per_sec: int) -> str:
    secs, frac = divmod(value, unit_per_sec)
    return f"{secs}.{frac * (1_000_000_000 // unit_per_sec):09d}"


_UNITS = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


def _column_strings(column: pa.ChunkedArray, sf_type: str) -> list[str | None]:
    typ = column.type
    if pa.types.is_timestamp(typ):
        ints = pc.cast(column, pa.int64()).to_pylist()
        unit = _UNITS[typ.unit]
        suffix = " 1440" if sf_type == "TIMESTAMP_TZ" else ""  # DuckDB keeps UTC instants only
        return [None if v is None else _fmt_epoch(v, unit) + suffix for v in ints]
    if pa.types.is_date(typ):
        return [None if v is None else str(v) for v in pc.cast(column, pa.int32()).to_pylist()]
    if pa.types.is_time(typ):
        ints = pc.cast(column, pa.int64()).to_pylist()
        return [None if v is None else _fmt_epoch(v, _UNITS[typ.unit]) for v in ints]
    out: list[str | None] = []
    for v in column.to_pylist():
        if v is None:
            out.append(None)
        elif isinstance(v, bool):
            out.append("true" if v else "false")
        elif isinstance(v, decimal.Decimal):
            out.append(format(v, "f"))
        elif isinstance(v, float):
            out.append(repr(v) if v == v and v not in (float("inf"), float("-inf")) else str(v).upper())
        elif isinstance(v, bytes):
            out.append(v.hex().upper())
        elif isinstance(v, (list, dict)):
            out.append(json.dumps(v, default=str))
        else:
            out.append(str(v))
    return out


STATS_COLUMNS = {
    "number of rows inserted": "numRowsInserted",
    "number of rows updated": "numRowsUpdated",
    "number of rows deleted": "numRowsDeleted",
    "number of multi-joined rows updated": "numDuplicateRowsUpdated",
}


def result_from_cursor(cur: Any, is_dml: bool) -> tuple[list[dict], list[list], dict | None]:
    table: pa.Table = cur._arrow_table  # noqa: SLF001
    try:
        described = {row[0]: row[1] for row in cur._describe_last_sql()}  # noqa: SLF001
    except Exception:  # noqa: BLE001 - fall back on arrow types
        described = {}
    row_type = []
    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        sf = _duck_to_sf(described.get(field.name), field.type)
        row_type.append({"name": field.name, **sf, "nullable": True})
        columns.append(_column_strings(column, sf["type"]))
    rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
    stats = None
    if is_dml and rows and all(c["name"] in STATS_COLUMNS for c in row_type):
        stats = {v: 0 for v in STATS_COLUMNS.values()}
        for c, v in zip(row_type, rows[0], strict=True):
            stats[STATS_COLUMNS[c["name"]]] = int(decimal.Decimal(v or "0"))
    if not row_type:
        row_type = [{"name": "status", "type": "TEXT", "length": 16777216, "precision": 0, "scale": 0, "nullable": True}]
        rows = [[OK_MESSAGE]]
    return row_type, rows, stats


# ---------------------------------------------------------------------------------------------
# Statements and the engine
# ---------------------------------------------------------------------------------------------


class Statement:
    def __init__(self, body: dict, request_id: str | None):
        self.handle = str(uuid.uuid4())
        self.request_id = request_id
        self.body = body
        self.created_on = now_ms()
        self.state = "running"  # running | success | failed | canceled
        self.done = threading.Event()
        self.cancel_requested = False
        self.duck_conn: Any = None
        self.row_type: list[dict] = []
        self.rows: list[list] = []
        self.stats: dict | None = None
        self.error: tuple[str, str, str] | None = None  # code, sqlState, message

    @property
    def status_url(self) -> str:
        return f"/api/v2/statements/{self.handle}"


def map_exception(e: BaseException) -> tuple[str, str, str]:
    if (strict := strict_sql.map_error(e)) is not None:
        return strict
    if (evolution := schema_evolution.map_error(e)) is not None:
        return evolution
    if isinstance(e, sf_errors.Error):
        errno = e.errno if isinstance(e.errno, int) and e.errno > 0 else 603
        # the connector's msg may carry an "002003 (42S02): " prefix; the SQL API message does not
        msg = re.sub(r"^\d{6} \([0-9A-Z]{5}\): ", "", str(e.msg or e))
        return f"{errno:06d}", e.sqlstate or "XX000", msg
    msg = str(e).split("\n")[0] if str(e) else type(e).__name__
    if isinstance(e, (duckdb.IOException, duckdb.HTTPException)):
        return "091016", "22000", f"Remote file error: {msg}"
    if isinstance(e, (duckdb.ConversionException, duckdb.InvalidInputException)):
        return "100038", "22018", msg
    if isinstance(e, duckdb.CatalogException):
        return "002003", "42S02", f"SQL compilation error:\n{msg}"
    if isinstance(e, duckdb.ParserException):
        return "001003", "42000", f"SQL compilation error:\n{msg}"
    if isinstance(e, duckdb.InterruptException):
        return "000604", "57014", "SQL execution canceled"
    if isinstance(e, NotImplementedError):
        return "002040", "0A000", f"Unsupported feature in the local stack (fakesnow): {msg}"
    return "000603", "XX000", f"SQL execution internal error: {type(e).__name__}: {msg}"


class Engine:
    def __init__(self) -> None:
        self.fs = FakeSnow(create_database_on_connect=False, create_schema_on_connect=False)
        self.exec_lock = exec_lock.ExecLock()
        self.cursor_lock = threading.Lock()  # new DuckDB connections are made one at a time
        self.timing = warehouse_timing.Model()
        self.state_lock = threading.Lock()
        self.statements: dict[str, Statement] = {}
        self.by_request_id: dict[str, Statement] = {}
        self.table_locks = table_locks.TableLocks()
        self.dynamic_tables = dynamic_tables.DynamicTables()
        self.pipes: snowpipe_api.SnowpipeApi | None = None  # set by Service: pipe statements
        self.reset()
        self._init_s3()
        self.dynamic_tables.start(self._refresh_dynamic_table, self.timing.refresh_lead_seconds)

    def reset(self) -> None:
        with self.state_lock:
            self.faults: dict[str, dict] = {}
            self.submissions = 0
            self.executions = 0
            self.exec_by_request_id: dict[str, int] = {}
            self.partition_rows = int(os.environ.get("LOCAL_SF_PARTITION_ROWS", "1000"))
            self.async_after_ms = int(os.environ.get("LOCAL_SF_ASYNC_AFTER_MS", "45000"))
            load_history.set_clock_offset_days(0)
        if hasattr(self, "timing"):
            self.timing.reset()

    def connect(self, database: str | None = None, schema: str | None = None, **kwargs: Any) -> Any:
        """A fakesnow connection on a DuckDB connection of its own (thread-safe; see local/exec_lock.py)."""
        with self.cursor_lock:
            return self.fs.connect(database=database, schema=schema, **kwargs)

    def duck_cursor(self) -> Any:
        """A plain DuckDB connection of its own, for the service's own reads."""
        with self.cursor_lock:
            return self.fs.duck_conn.cursor()

    def _init_s3(self) -> None:
        ext_dir = Path(duckdb_extension_httpfs.__file__).parent / "extensions"
        ext = next(ext_dir.glob(f"v{duckdb.__version__}/httpfs.duckdb_extension"), None) or next(
            ext_dir.glob("*/httpfs.duckdb_extension")
        )
        endpoint = os.environ.get("LOCAL_SF_S3_ENDPOINT", "127.0.0.1:4566")
        conn = self.fs.duck_conn
        conn.execute(f"LOAD '{ext}'")
        conn.execute(
            "CREATE OR REPLACE SECRET local_moto (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1', "
            f"ENDPOINT '{endpoint}', URL_STYLE 'path', USE_SSL false)"
        )
        log(f"httpfs loaded from {ext}; S3 endpoint http://{endpoint}")

    # -- Snowpipe loads ----------------------------------------------------------------------
    def run_pipe_copy(self, database: str, schema: str, sql: str) -> tuple[list[dict] | None, tuple | None]:
        """A pipe's COPY of one file, run like a statement (same COPY, errors as the SQL API words them) but keeping
        no table load metadata: (result rows as dicts, None) or (None, (code, sqlState, message))."""
        body = {"statement": sql, "database": database, "schema": schema, "pipe_load": True,
                "warehouse": session_context.default_warehouse(), "role": (session_context.roles() or [None])[0]}
        st = Statement(body, None)
        try:
            with self.exec_lock:
                self._execute(st)
        except BaseException as e:  # noqa: BLE001
            return None, map_exception(e)
        names = [c["name"].lower() for c in st.row_type]
        return [dict(zip(names, row, strict=True)) for row in st.rows], None

    @staticmethod
    def _forget_pipe_load(duck: Any, database: str | None, files: list[str]) -> None:
        """[LOADHIST] (snowpipe_api.py): INFORMATION_SCHEMA.LOAD_HISTORY leaves Snowpipe loads out; fakesnow's COPY
        recorded this one (the latest record of the file: runs under the engine lock)."""
        if not database or not files:
            return
        table = f'"{database.replace(chr(34), chr(34) * 2)}"._fs_information_schema._fs_load_history'
        try:
            for url in files:
                duck.execute(f"DELETE FROM {table} WHERE FILE_NAME = ? AND LAST_LOAD_TIME = "
                             f"(SELECT max(LAST_LOAD_TIME) FROM {table} WHERE FILE_NAME = ?)", [url, url])
        except duckdb.Error as e:
            log(f"snowpipe: could not hide a pipe load from LOAD_HISTORY: {e}")

    def table_exists(self, database: str, schema: str, table: str) -> bool:
        """Called while a statement runs (under the engine lock)."""
        rows = self.fs.duck_conn.cursor().execute(
            "SELECT 1 FROM information_schema.tables WHERE table_catalog = ? AND table_schema = ? AND table_name = ?",
            [database, schema, table]).fetchall()
        return bool(rows)

    # -- fault bookkeeping -------------------------------------------------------------------
    def _refresh_dynamic_table(self, table: dynamic_tables.DynamicTable, sql: str) -> None:
        """A scheduled refresh, run like a statement of its own (alone: it replaces a table). With the timing
        model on it first spends the refresh's modelled warehouse time (local/warehouse_timing.py)."""
        time.sleep(self.timing.refresh_seconds())
        with self.exec_lock:
            conn = self.connect(database=table.database, schema=table.schema)
            try:
                conn.cursor().execute(sql)
            except Exception as e:  # noqa: BLE001 - a failed refresh leaves the older content
                log(f"dynamic table {table.name}: refresh failed: {type(e).__name__}: {e}")
            finally:
                conn.close()
                self.fs.results_cache.clear()

    def take_fault(self, kind: str) -> dict | None:
        with self.state_lock:
            f = self.faults.get(kind)
            if not f or f["count"] <= 0:
                return None
            f["count"] -= 1
            return dict(f)

    # -- submission ----------------------------------------------------------------------------
    def submit(self, body: dict, request_id: str | None, retry: bool) -> tuple[Statement, bool]:
        """Returns (statement, is_new)."""
        with self.state_lock:
            if request_id and retry and (prev := self.by_request_id.get(request_id)):
                # Snowflake: a retried request is not executed again unless it did not succeed
                if prev.state in ("running", "success"):
                    return prev, False
            st = Statement(body, request_id)
            self.statements[st.handle] = st
            if request_id:
                self.by_request_id[request_id] = st
        threading.Thread(target=self._run, args=(st,), name=f"stmt-{st.handle[:8]}", daemon=True).start()
        return st, True

    def cancel(self, st: Statement) -> None:
        st.cancel_requested = True
        conn = st.duck_conn
        if conn is not None:
            try:
                conn.interrupt()
            except Exception:  # noqa: BLE001
                pass

    def _run(self, st: Statement) -> None:
        try:
            delay = self.take_fault("delay")
            if delay:
                deadline = time.monotonic() + delay["delay_ms"] / 1000
                while time.monotonic() < deadline and not st.cancel_requested:
                    time.sleep(0.01)
            timeout = st.body.get("timeout") or 0
            exclusive = not SHARED_RE.match(st.body.get("statement") or "")
            with table_locks.statement_lock(self.table_locks, st, self.take_fault), self.exec_lock.holding(exclusive):
                if st.cancel_requested:
                    raise duckdb.InterruptException("canceled before execution")
                if timeout and (now_ms() - st.created_on) / 1000 > timeout:
                    st.error = (
                        "000630",
                        "57014",
                        f"Statement reached its statement or warehouse timeout of {timeout} second(s) and was canceled.",
                    )
                    st.state = "failed"
                    return
                with self.state_lock:
                    self.executions += 1
                    if st.request_id:
                        self.exec_by_request_id[st.request_id] = self.exec_by_request_id.get(st.request_id, 0) + 1
                self._execute(st)
        except BaseException as e:  # noqa: BLE001
            if st.cancel_requested:
                st.error = ("000604", "57014", "SQL execution canceled")
                st.state = "canceled"
            else:
                st.error = map_exception(e)
                st.state = "failed"
                log(f"statement {st.handle} failed: {st.error[0]} {st.error[2]!r}")
        finally:
            st.duck_conn = None
            st.done.set()

    def _execute(self, st: Statement) -> None:
        sql: str = st.body["statement"]
        params = convert_bindings(st.body.get("bindings"))
        load_history.begin()
        session = self.duck_cursor()
        try:
            database, schema = session_context.open_session(session, st.body, sql)
        finally:
            session.close()
        if self.pipes is not None and (answer := self.pipes.sql(sql, database, schema)) is not None:
            st.row_type = [{"name": n, "type": "TEXT", "length": 16777216, "precision": 0, "scale": 0, "nullable": True}
                           for n in answer[0]]
            st.rows = [[None if v is None else str(v) for v in row] for row in answer[1]]
            st.state = "success"
            return
        if NOP_RE.match(sql):
            log(f"statement {st.handle}: STREAM/TASK statement skipped (not supported by fakesnow): {sql[:80]!r}")
            st.row_type, st.rows = result_from_cursor_nop()
            st.state = "success"
            return
        self._check_single_statement(st, sql)
        sql = self.dynamic_tables.rewrite(sql, database, schema)
        conn = self.connect(database=database, schema=schema, paramstyle="qmark")
        duck = conn._duck_conn  # noqa: SLF001
        st.duck_conn = duck
        is_dml = bool(TX_RE.match(sql))
        cur = conn.cursor()
        cur._local_lazy_begin = is_dml  # type: ignore[attr-defined]
        try:
            cur.execute(sql, binding_params=params) if params else cur.execute(sql)
            st.row_type, st.rows, st.stats = result_from_cursor(cur, is_dml)
            self._spend_warehouse_time(st, is_dml)
            if st.cancel_requested:
                raise duckdb.InterruptException("canceled")
            if getattr(cur, "_local_in_tx", False):
                cur._local_in_tx = False  # type: ignore[attr-defined]
                duck.commit()
            if st.body.get("pipe_load"):
                load_history.begin()  # a pipe's load keeps no table load metadata (snowpipe_api.py, [INTRO])
                loaded = [r[0] for r in st.rows] if st.row_type and st.row_type[0]["name"].lower() == "file" else []
                self._forget_pipe_load(duck, database, loaded)
            else:
                load_history.statement_succeeded(duck, sql, database, schema)
            st.state = "success"
        finally:
            if getattr(cur, "_local_in_tx", False):
                try:
                    duck.rollback()
                except Exception as e:  # noqa: BLE001
                    log(f"rollback failed: {e}")
            self.fs.results_cache.clear()
            try:
                duck.close()
            except Exception:  # noqa: BLE001
                pass

    def _spend_warehouse_time(self, st: Statement, is_dml: bool) -> None:
        """With the timing model on, a DML statement takes its modelled cost before it commits: its table lock
        held, the exec lock let go (local/warehouse_timing.py). Ends early when the statement is canceled."""
        if not is_dml or (seconds := self.timing.dml_seconds(modelled_rows(st))) <= 0:
            return
        deadline = time.monotonic() + seconds
        with self.exec_lock.suspended():
            while (left := deadline - time.monotonic()) > 0 and not st.cancel_requested:
                time.sleep(min(left, 0.05))

    @staticmethod
    def _check_single_statement(st: Statement, sql: str) -> None:
        wanted = (st.body.get("parameters") or {}).get("multi_statement_count", 1)
        from fakesnow.dialect import parse

        try:
            n = len([e for e in parse(sql) if e and not isinstance(e, exp.Semicolon)])
        except Exception:  # noqa: BLE001 - let execution report the syntax error
            return
        if n > 1 or wanted not in (1, "1"):
            raise sf_errors.ProgrammingError(
                msg=f"Actual statement count {n} did not match the desired statement count {wanted}."
                + (" (multi-statement requests are not supported by the local stack)" if n > 1 else ""),
                errno=8,
                sqlstate="0A000",
            )


def modelled_rows(st: Statement) -> int:
    """The rows a DML statement wrote, for its modelled cost: its DML stats, or a COPY's rows_loaded."""
    if st.stats:
        return sum(st.stats.values())
    names = [c["name"].lower() for c in st.row_type]
    if "rows_loaded" in names:
        i = names.index("rows_loaded")
        return sum(int(r[i] or 0) for r in st.rows if str(r[i] or "0").isdigit())
    return 0


def result_from_cursor_nop() -> tuple[list[dict], list[list]]:
    return (
        [{"name": "status", "type": "TEXT", "length": 16777216, "precision": 0, "scale": 0, "nullable": True}],
        [[OK_MESSAGE]],
    )


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


class Service:
    def __init__(self) -> None:
        self.spec = Spec(find_spec())
        self.auth = Auth()
        self.engine = Engine()
        self.validate = os.environ.get("LOCAL_SF_VALIDATE", "0") == "1"
        host = os.environ.get("LOCAL_SF_HOST", "127.0.0.1")
        port = os.environ.get("LOCAL_SF_PORT", "8787")
        self.streaming = streaming_api.StreamingApi(self.engine, self._check_streaming_auth, f"{host}:{port}")
        self.snowpipe = snowpipe_api.SnowpipeApi(self.engine.run_pipe_copy, self.auth.check, self.engine.table_exists)
        self.engine.pipes = self.snowpipe

    def _check_streaming_auth(self, headers: Any) -> None:
        try:
            self.auth.check(headers)
        except AuthError as e:
            raise streaming_api.StreamingError(401, e.code, e.message) from None

    def status_body(self, st: Statement) -> dict:
        return {
            "code": "333334",
            "message": ASYNC_MESSAGE,
            "statementHandle": st.handle,
            "statementStatusUrl": st.status_url,
        }

    def outcome(self, st: Statement, partition: int | None = None) -> tuple[int, dict]:
        if not st.done.is_set():
            return 202, self.status_body(st)
        if st.state != "success":
            code, sqlstate, message = st.error or ("000603", "XX000", "unknown error")
            return 422, {
                "code": code,
                "sqlState": sqlstate,
                "message": message,
                "statementHandle": st.handle,
                "createdOn": st.created_on,
                "statementStatusUrl": st.status_url,
            }
        size = max(1, self.engine.partition_rows)
        parts = [st.rows[i : i + size] for i in range(0, len(st.rows), size)] or [[]]
        if partition is not None and not 0 <= partition < len(parts):
            return 400, {"code": "390000", "message": f"Partition {partition} out of range (0..{len(parts) - 1})."}
        if partition:
            return 200, {"data": parts[partition]}
        body = {
            "code": "090001",
            "sqlState": "00000",
            "message": OK_MESSAGE,
            "statementHandle": st.handle,
            "createdOn": st.created_on,
            "statementStatusUrl": st.status_url,
            "resultSetMetaData": {
                "format": "jsonv2",
                "numRows": len(st.rows),
                "rowType": st.row_type,
                "partitionInfo": [
                    {"rowCount": len(p), "uncompressedSize": len(json.dumps(p).encode())} for p in parts
                ],
                "nullable": True,
            },
            "data": parts[0],
        }
        if st.stats is not None:
            body["stats"] = st.stats
        return 200, body


SERVICE: Service | None = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "local-snowflake-sqlapi/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet default logging
        pass

    # -- helpers ---------------------------------------------------------------------------
    def _send(self, status: int, body: Any, op: str | None = None) -> None:
        svc = SERVICE
        assert svc
        if op and svc.validate:
            if err := svc.spec.check_response(op, status, body):
                log(f"!!!!! RESPONSE DOES NOT VALIDATE AGAINST THE SPEC: {err}")
                status, body = 500, {"code": "000500", "message": f"local service bug: invalid response: {err}"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self._status = status

    def _send_text(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self._status = status

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _drop(self) -> None:
        self.close_connection = True
        self._status = "dropped"
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self, method: str) -> None:
        t0 = time.monotonic()
        self._status: int | str = "-"
        url = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._route(method, url.path, q)
        except Exception as e:  # noqa: BLE001
            log(f"internal error: {traceback.format_exc()}")
            self._send(500, {"code": "000500", "message": f"internal error: {type(e).__name__}"})
        finally:
            ms = (time.monotonic() - t0) * 1000
            log(f"{method} {url.path} requestId={q.get('requestId', '-')} -> {self._status} {ms:.0f}ms")

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # -- routing ---------------------------------------------------------------------------
    def _route(self, method: str, path: str, q: dict) -> None:
        svc = SERVICE
        assert svc
        eng = svc.engine
        raw = self._read_body() if method in ("POST", "PUT") else b""
        if path == "/healthz":
            return self._send(200, {"status": "ok"})
        if path.startswith("/admin/"):
            return self._admin(method, path, raw)
        if path.startswith("/v1/data/pipes/"):
            status, body = svc.snowpipe.handle(method, path, q, self.headers, raw)
            return self._drop() if body == "drop" else self._send(status, body)
        if path.startswith(("/v2/streaming/", "/oauth/")):
            try:
                answer = svc.streaming.handle(method, path, q, self.headers, raw)
            except streaming_api.StreamingError as e:
                answer = (e.status, e.body())
            if answer is None:
                return self._send(404, {"code": "ERR_NOT_FOUND", "message": "Not found."})
            status, body = answer
            if body == "drop":
                return self._drop()
            if isinstance(body, bytes):
                return self._send_text(status, body)
            return self._send(status, body)
        m = re.fullmatch(r"/api/v2/statements(?:/([^/]+)(/cancel)?)?/?", path)
        if not m:
            return self._send(404, {"code": "390404", "message": "Not found."})
        handle, cancel = m.group(1), m.group(2)
        op = "cancel" if cancel else ("get" if handle else "submit")
        expected_method = "GET" if op == "get" else "POST"
        if method != expected_method:
            return self._send(405, {"code": "390405", "message": f"Method {method} not allowed."})
        if not self.headers.get("User-Agent"):
            return self._send(400, {"code": "390400", "message": "Header 'User-Agent' is required."})
        try:
            svc.auth.check(self.headers)
        except AuthError as e:
            return self._send(401, {"code": e.code, "message": e.message})

        if op == "submit":
            return self._submit(svc, eng, q, raw)

        st = eng.statements.get(handle)
        if st is None:
            return self._send(404, {"code": "390404", "message": f"Statement {handle[:64]} not found."})
        if op == "cancel":
            if st.done.is_set():
                return self._send(
                    200,
                    {"code": "000000", "sqlState": "00000", "message": "Statement already completed.",
                     "statementHandle": st.handle, "statementStatusUrl": st.status_url},
                    "cancel",
                )
            eng.cancel(st)
            return self._send(
                200,
                {"code": "000000", "sqlState": "00000", "message": "successfully canceled",
                 "statementHandle": st.handle, "statementStatusUrl": st.status_url},
                "cancel",
            )
        partition = None
        if "partition" in q:
            if not re.fullmatch(r"\d+", q["partition"]):
                return self._send(400, {"code": "390400", "message": "Invalid partition."})
            partition = int(q["partition"])
        status, body = svc.outcome(st, partition)
        return self._send(status, body, "get")

    def _submit(self, svc: Service, eng: Engine, q: dict, raw: bytes) -> None:
        with eng.state_lock:
            eng.submissions += 1
        if eng.take_fault("drop"):
            return self._drop()
        if fault := eng.take_fault("status"):
            st = fault["status"]
            msgs = {429: "Too many requests.", 503: "Service unavailable.", 504: "Gateway timeout.",
                    500: "Internal error (injected)."}
            return self._send(st, {"code": f"390{st}", "message": msgs.get(st, "Injected fault.")})
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if ctype != "application/json":
            return self._send(415, {"code": "390415", "message": f"Unsupported media type {ctype[:60]}."})
        try:
            body = json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._send(400, {"code": "390400", "message": "Request body is not valid JSON."})
        errors = sorted(jsonschema.Draft7Validator(svc.spec.request).iter_errors(body), key=str)
        if errors:
            e = errors[0]
            where = "/".join(map(str, e.absolute_path)) or "body"
            return self._send(400, {"code": "390400", "message": f"Invalid request at {where}: {e.message}"})
        if not isinstance(body.get("statement"), str) or not body["statement"].strip():
            return self._send(400, {"code": "390400", "message": "Field 'statement' is required."})
        request_id = q.get("requestId")
        if request_id is not None:
            try:
                uuid.UUID(request_id)
            except ValueError:
                return self._send(400, {"code": "390400", "message": "requestId must be a UUID."})
        try:
            convert_bindings(body.get("bindings"))
        except BindingError as e:
            return self._send(400, {"code": "390400", "message": str(e)})
        except strict_sql.StrictError:
            pass  # a well-formed value Snowflake refuses when the statement runs: answered as its SQL error
        retry = q.get("retry", "").lower() == "true"
        is_async = q.get("async", "").lower() == "true"
        st, _new = eng.submit(body, request_id, retry)
        if not is_async:
            st.done.wait(eng.async_after_ms / 1000)
        status, out = svc.outcome(st) if st.done.is_set() else (202, svc.status_body(st))
        return self._send(status, out, "submit")

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        eng = SERVICE.engine  # type: ignore[union-attr]
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return self._send(400, {"message": "invalid JSON"})
        if path == "/admin/stats" and method == "GET":
            with eng.state_lock:
                return self._send(
                    200,
                    {
                        "submissions": eng.submissions,
                        "executions": eng.executions,
                        "by_request_id": dict(eng.exec_by_request_id),
                        "faults": copy.deepcopy(eng.faults),
                        "partition_rows": eng.partition_rows,
                        "async_after_ms": eng.async_after_ms,
                        "validate": SERVICE.validate,  # type: ignore[union-attr]
                        "clock_offset_days": load_history.clock_offset_days(),
                        "table_locks": {"held": eng.table_locks.held(), "waiting": eng.table_locks.waiting(),
                                        "aborts": eng.table_locks.aborts},
                        "streaming": SERVICE.streaming.stats(),  # type: ignore[union-attr]
                        "snowpipe": SERVICE.snowpipe.stats(),  # type: ignore[union-attr]
                        "timing": eng.timing.stats(),
                    },
                )
        if method != "POST":
            return self._send(405, {"message": "use POST"})
        if path == "/admin/reset":
            eng.reset()
            SERVICE.streaming.reset()  # type: ignore[union-attr]
            SERVICE.snowpipe.reset()  # type: ignore[union-attr]
            return self._send(200, {"reset": True})
        if path in ("/admin/faults", "/admin/config"):
            count = int(body.get("count", 1))
            with eng.state_lock:
                if "status" in body:
                    eng.faults["status"] = {"status": int(body["status"]), "count": count}
                if "delay_ms" in body:
                    eng.faults["delay"] = {"delay_ms": int(body["delay_ms"]), "count": count}
                if body.get("drop_connection"):
                    eng.faults["drop"] = {"count": count}
                if "hold_table_lock_ms" in body:
                    eng.faults["hold_table_lock"] = {"hold_ms": int(body["hold_table_lock_ms"]), "count": count}
                if "clock_offset_days" in body:
                    load_history.set_clock_offset_days(float(body["clock_offset_days"]))
                if "async_after_ms" in body:
                    eng.async_after_ms = int(body["async_after_ms"])
                if "partition_rows" in body:
                    eng.partition_rows = int(body["partition_rows"])
            try:
                SERVICE.streaming.admin(body)  # type: ignore[union-attr]
                SERVICE.snowpipe.admin(body)  # type: ignore[union-attr]
            except (TypeError, ValueError) as e:
                return self._send(400, {"message": f"invalid streaming/snowpipe setting: {e}"})
            try:
                eng.timing.configure(body)
            except (TypeError, ValueError) as e:
                return self._send(400, {"message": f"invalid timing setting: {e}"})
            return self._send(200, {"ok": True})
        return self._send(404, {"message": "unknown admin endpoint"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    global SERVICE
    SERVICE = Service()
    host = os.environ.get("LOCAL_SF_HOST", "127.0.0.1")
    port = int(os.environ.get("LOCAL_SF_PORT", "8787"))
    httpd = Server((host, port), Handler)
    log(
        f"local Snowflake SQL API on http://{host}:{port} account={SERVICE.auth.account} user={SERVICE.auth.user} "
        f"fingerprint={SERVICE.auth.fingerprint} validate={SERVICE.validate}"
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
