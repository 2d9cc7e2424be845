"""The Snowpipe Streaming REST API (high-performance architecture, named channels) over fakesnow.

Contract: https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-rest-api
(error body `{"code", "message"}`, 4 MB request limit after compression, `Content-Encoding` gzip
or zstd, NDJSON rows) and the limits page
https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-limitations.

  GET    /v2/streaming/hostname                           {"hostname": "<this service's host:port>"}
  POST   /oauth/token   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&scope=<hostname>,
                        authorised like the SQL API (key-pair JWT or PAT); answers the scoped token as
                        plain text (what Snowflake sends; the page shows it JSON-wrapped, and the
                        project's client reads both)
  PUT    /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}
  POST   /v2/streaming/data/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}/rows
         ?continuationToken=..&offsetToken=..|endOffsetToken=..
  DELETE /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}
  POST   /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}:bulk-channel-status

Local model, and where it is stricter than the page says:
- Pipes: only each table's default pipe `<TABLE>-STREAMING` (Snowflake creates it on first use);
  `CREATE PIPE` is a no-op in this service. Names in paths are case-insensitive.
- Channel endpoints take only a scoped token (401 for the account's JWT or PAT).
- A continuation token carries (client sequencer, row sequencer). Reopening a channel bumps the
  client sequencer, so an append with an older token fails `STALE_CONTINUATION_TOKEN_SEQUENCER`
  (the page's example); an append whose row sequencer is not the channel's current one (a
  replayed token after a lost response) fails `STALE_CONTINUATION_TOKEN_ROW_SEQUENCER` (our
  name: the page does not list it). Either way the client reopens and resumes from the committed
  offset token.
- Appends commit at once (Snowflake commits within seconds): the committed offset token and the
  rows are visible when the append answers. A row that does not fit the table is not inserted and
  is counted in `rows_error_count` with `last_error_message`, as the default pipe's
  `ON_ERROR = CONTINUE` does; an unknown column is such an error here.
- Appends never take a table's DML lock (table_locks.py): that is the point of streaming.
Faults (POST /admin/faults): {"streaming_status": 429|503, "count": N},
{"streaming_drop_connection": true, "count": N}, {"invalidate_channel": "<name>"} (its next
append fails `ERR_CHANNEL_MUST_BE_REOPENED` until reopened).
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import threading
import time
from typing import Any, Callable
from urllib.parse import parse_qs

import zstandard

MAX_REQUEST_BYTES = 4 * 1024 * 1024
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPED_TOKEN_SECONDS = 3600

CHANNEL_RE = re.compile(
    r"/v2/streaming/(data/)?databases/([^/]+)/schemas/([^/]+)/pipes/([^/:]+)(?:/channels/([^/]+)(/rows)?|(:bulk-channel-status))"
)


class StreamingError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"code": self.code, "message": self.message}


class Channel:
    def __init__(self, db: str, schema: str, pipe: str, name: str, table: str):
        self.db, self.schema, self.pipe, self.name, self.table = db, schema, pipe, name, table
        self.client_seq = 0
        self.row_seq = 0
        self.offset_token: str | None = None
        self.created_on_ms = int(time.time() * 1000)
        self.rows_inserted = 0
        self.rows_parsed = 0
        self.rows_error_count = 0
        self.last_error_message: str | None = None
        self.last_error_offset: str | None = None
        self.invalid = False
        self.columns: dict[str, str] = {}

    def token(self) -> str:
        return f"{self.client_seq}_{self.row_seq}"

    def status(self) -> dict:
        return {
            "database_name": self.db,
            "schema_name": self.schema,
            "pipe_name": self.pipe,
            "channel_name": self.name,
            "channel_status_code": "INVALID" if self.invalid else "ACTIVE",
            "last_committed_offset_token": self.offset_token,
            "created_on_ms": self.created_on_ms,
            "rows_inserted": self.rows_inserted,
            "rows_parsed": self.rows_parsed,
            "rows_error_count": self.rows_error_count,
            "last_error_offset_upper_bound": self.last_error_offset,
            "last_error_message": self.last_error_message,
            "last_error_timestamp": None,
            "snowflake_avg_processing_latency_ms": 0,
        }


class StreamingApi:
    """State and handlers; `engine` is the SQL service's Engine (fakesnow, exec lock, faults)."""

    def __init__(self, engine: Any, check_auth: Callable[[Any], None], hostname: str):
        self.engine = engine
        self.check_auth = check_auth
        self.hostname = hostname
        self.lock = threading.Lock()
        self.scoped: dict[str, float] = {}
        self.channels: dict[tuple[str, str, str, str], Channel] = {}
        self.appends = 0

    # -- entry point ------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers: Any, raw: bytes) -> tuple[int, Any] | None:
        """(status, body) for a streaming path, None for any other path; body `bytes` is plain text,
        "drop" drops the connection."""
        if path == "/v2/streaming/hostname" and method == "GET":
            self.check_auth(headers)
            return 200, {"hostname": self.hostname}
        if path == "/oauth/token" and method == "POST":
            return self.exchange(headers, raw)
        m = CHANNEL_RE.fullmatch(path)
        if not m:
            return None
        try:
            self.check_scoped(headers)
            if fault := self.engine.take_fault("streaming_drop"):
                del fault
                return 0, "drop"
            if fault := self.engine.take_fault("streaming_status"):
                status = fault["status"]
                code = {429: "ERR_TOO_MANY_REQUESTS", 503: "ERR_SERVICE_UNAVAILABLE"}.get(status, "ERR_INJECTED")
                return status, {"code": code, "message": f"Injected fault {status}."}
            data, db, schema, pipe, channel, rows, bulk = m.groups()
            db, schema, pipe = db.upper(), schema.upper(), pipe.upper()
            if bulk and method == "POST" and not data:
                return 200, self.bulk_status(db, schema, pipe, raw)
            if channel and rows and data and method == "POST":
                return 200, self.append(db, schema, pipe, channel.upper(), query, headers, raw)
            if channel and not rows and not data and method == "PUT":
                return 200, self.open(db, schema, pipe, channel.upper(), raw)
            if channel and not rows and not data and method == "DELETE":
                return 200, self.drop(db, schema, pipe, channel.upper())
            raise StreamingError(404, "ERR_NOT_FOUND", f"{method} {path} is not an endpoint.")
        except StreamingError as e:
            return e.status, e.body()

    # -- auth -------------------------------------------------------------------------------
    def exchange(self, headers: Any, raw: bytes) -> tuple[int, Any]:
        self.check_auth(headers)
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return 400, {"code": "ERR_INVALID_REQUEST", "message": "Content-Type must be application/x-www-form-urlencoded."}
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return 400, {"code": "ERR_INVALID_REQUEST", "message": f"grant_type must be {GRANT_TYPE}."}
        if form.get("scope") != self.hostname:
            return 400, {"code": "ERR_INVALID_REQUEST", "message": "scope must be the account's streaming hostname."}
        token = "local-scoped-" + secrets.token_urlsafe(24)
        with self.lock:
            self.scoped[token] = time.time() + SCOPED_TOKEN_SECONDS
        return 200, token.encode()

    def check_scoped(self, headers: Any) -> None:
        authz = headers.get("Authorization") or ""
        token = authz[7:].strip() if authz.startswith("Bearer ") else ""
        with self.lock:
            expires = self.scoped.get(token)
        if expires is None or expires < time.time():
            raise StreamingError(401, "ERR_UNAUTHORIZED", "A valid scoped token is required (POST /oauth/token).")

    # -- channels ---------------------------------------------------------------------------
    def table_of(self, db: str, schema: str, pipe: str) -> tuple[str, dict[str, str]]:
        """The pipe's table and its columns (upper-cased name → name), read when a channel opens."""
        if not pipe.endswith("-STREAMING"):
            raise StreamingError(404, "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED", f"Pipe {pipe} does not exist (only default pipes <TABLE>-STREAMING are served locally).")
        table = pipe[: -len("-STREAMING")]
        columns = self.columns(db, schema, table)
        if not columns:
            raise StreamingError(404, "ERR_TABLE_DOES_NOT_EXIST_NOT_AUTHORIZED", f"Table {db}.{schema}.{table} does not exist.")
        return table, {c.upper(): c for c in columns}

    def columns(self, db: str, schema: str, table: str) -> list[str]:
        with self.engine.exec_lock:
            try:
                rows = self.engine.fs.duck_conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE upper(table_catalog) = ? "
                    "AND upper(table_schema) = ? AND upper(table_name) = ? ORDER BY ordinal_position",
                    [db, schema, table],
                ).fetchall()
            except Exception:  # noqa: BLE001
                return []
        return [r[0] for r in rows]

    def open(self, db: str, schema: str, pipe: str, name: str, raw: bytes) -> dict:
        table, columns = self.table_of(db, schema, pipe)
        body = self.json_body(raw) if raw.strip() else {}
        with self.lock:
            ch = self.channels.get((db, schema, pipe, name))
            if ch is None:
                ch = self.channels[(db, schema, pipe, name)] = Channel(db, schema, pipe, name, table)
            ch.columns = columns  # a reopened channel sees the table as it is now
            ch.client_seq += 1
            ch.invalid = False
            if body.get("offset_token") is not None:
                ch.offset_token = str(body["offset_token"])
            return {"next_continuation_token": ch.token(), "channel_status": ch.status()}

    def drop(self, db: str, schema: str, pipe: str, name: str) -> dict:
        with self.lock:
            if self.channels.pop((db, schema, pipe, name), None) is None:
                raise StreamingError(404, "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED", f"Channel {name} does not exist.")
        return {}

    def bulk_status(self, db: str, schema: str, pipe: str, raw: bytes) -> dict:
        body = self.json_body(raw)
        names = body.get("channel_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise StreamingError(400, "ERR_INVALID_REQUEST", "channel_names must be an array of strings.")
        with self.lock:
            out = {}
            for n in names:
                ch = self.channels.get((db, schema, pipe, n.upper()))
                if ch is not None:
                    out[n] = ch.status()
        return {"channel_statuses": out}

    def invalidate(self, name: str) -> None:
        with self.lock:
            for (_, _, _, n), ch in self.channels.items():
                if n == name.upper():
                    ch.invalid = True

    # -- append -----------------------------------------------------------------------------
    def append(self, db: str, schema: str, pipe: str, name: str, query: dict, headers: Any, raw: bytes) -> dict:
        with self.lock:
            ch = self.channels.get((db, schema, pipe, name))
        if ch is None:
            raise StreamingError(404, "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED", f"Channel {name} does not exist; open it first.")
        if len(raw) > MAX_REQUEST_BYTES:
            raise StreamingError(413, "ERR_PAYLOAD_TOO_LARGE", f"Request payload of {len(raw)} bytes exceeds the 4 MB limit.")
        token = query.get("continuationToken")
        if not token:
            raise StreamingError(400, "ERR_INVALID_REQUEST", "continuationToken is required.")
        m = re.fullmatch(r"(\d+)_(\d+)", token)
        if not m:
            raise StreamingError(400, "ERR_INVALID_CONTINUATION_TOKEN", "The continuation token is not valid.")
        client_seq, row_seq = int(m[1]), int(m[2])
        rows = self.ndjson(self.decoded(headers, raw))
        columns = ch.columns
        offset = query.get("endOffsetToken") or query.get("offsetToken")
        with self.lock:
            if ch.invalid:
                raise StreamingError(400, "ERR_CHANNEL_MUST_BE_REOPENED", f"Channel {name} is invalid; reopen it.")
            if client_seq != ch.client_seq:
                raise StreamingError(400, "STALE_CONTINUATION_TOKEN_SEQUENCER", "Channel sequencer in the continuation token is stale. Please reopen the channel")
            if row_seq != ch.row_seq:
                raise StreamingError(400, "STALE_CONTINUATION_TOKEN_ROW_SEQUENCER", "Row sequencer in the continuation token is stale. Please reopen the channel")
            ch.row_seq += 1
            self.appends += 1
        inserted, errors, last_error = self.insert(db, schema, ch.table, columns, rows)
        with self.lock:
            ch.rows_parsed += len(rows)
            ch.rows_inserted += inserted
            ch.rows_error_count += errors
            if last_error:
                ch.last_error_message, ch.last_error_offset = last_error, offset
            if offset is not None:
                ch.offset_token = offset
            return {"next_continuation_token": ch.token()}

    @staticmethod
    def decoded(headers: Any, raw: bytes) -> bytes:
        enc = (headers.get("Content-Encoding") or "").strip().lower()
        try:
            if enc == "gzip":
                return gzip.decompress(raw)
            if enc == "zstd":
                return zstandard.ZstdDecompressor().decompressobj().decompress(raw)
        except Exception as e:  # noqa: BLE001
            raise StreamingError(400, "ERR_INVALID_REQUEST", f"Body is not valid {enc}: {type(e).__name__}.") from None
        if enc not in ("", "identity"):
            raise StreamingError(415, "ERR_UNSUPPORTED_CONTENT_ENCODING", f"Content-Encoding {enc[:20]} is not supported (gzip, zstd).")
        return raw

    @staticmethod
    def ndjson(body: bytes) -> list[dict]:
        rows = []
        for i, line in enumerate(body.split(b"\n")):
            line = line.rstrip(b"\r")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise StreamingError(400, "ERR_INVALID_NDJSON", f"Line {i + 1} is not RFC 8259 JSON.") from None
            if not isinstance(row, dict):
                raise StreamingError(400, "ERR_INVALID_NDJSON", f"Line {i + 1} is not a JSON object.")
            rows.append(row)
        return rows

    def insert(self, db: str, schema: str, table: str, columns: dict, rows: list[dict]) -> tuple[int, int, str | None]:
        """Inserts the rows into the table (never through its DML lock): rows with the same fields
        in one statement; when that fails, row by row, so a row that does not fit is counted and
        the others land."""
        inserted = errors = 0
        last_error = None
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(k.upper() for k in row), []).append(row)
        with self.engine.exec_lock:
            conn = self.engine.fs.connect(database=db, schema=schema, paramstyle="qmark")
            try:
                cur = conn.cursor()
                pending = []
                for keys, group in groups.items():
                    if any(k not in columns for k in keys) or len(group) == 1:
                        pending.extend(group)
                        continue
                    cols = ", ".join('"' + columns[k].replace('"', '""') + '"' for k in keys)
                    marks = "(" + ", ".join("?" for _ in keys) + ")"
                    values = [json.dumps(v, separators=(",", ":"), ensure_ascii=False) if isinstance(v, (dict, list)) else v for row in group for v in row.values()]
                    try:
                        cur.execute(f'INSERT INTO "{table}" ({cols}) VALUES {", ".join(marks for _ in group)}', values)
                        inserted += len(group)
                    except Exception:  # noqa: BLE001 - one row refused: find it row by row
                        pending.extend(group)
                for row in pending:
                    unknown = [k for k in row if k.upper() not in columns]
                    if unknown:
                        errors += 1
                        last_error = f"Unknown column {unknown[0][:60]!r} for table {table}."
                        continue
                    names = [columns[k.upper()] for k in row]
                    values = [json.dumps(v, separators=(",", ":"), ensure_ascii=False) if isinstance(v, (dict, list)) else v for v in row.values()]
                    cols = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
                    marks = ", ".join("?" for _ in names)
                    try:
                        cur.execute(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', values)
                        inserted += 1
                    except Exception as e:  # noqa: BLE001
                        errors += 1
                        last_error = f"{type(e).__name__}: {str(e)[:200]}"
            finally:
                conn.close()
                self.engine.fs.results_cache.clear()
        return inserted, errors, last_error

    @staticmethod
    def json_body(raw: bytes) -> dict:
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise StreamingError(400, "ERR_INVALID_REQUEST", "Body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise StreamingError(400, "ERR_INVALID_REQUEST", "Body must be a JSON object.")
        return body
