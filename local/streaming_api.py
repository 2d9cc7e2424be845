"""The Snowpipe Streaming REST API (high-performance architecture, named channels) over fakesnow.

Written from Snowflake's pages (each rule below cites the one it follows):
  [REST]     https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-rest-api
  [TUTORIAL] https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-rest-tutorial
  [ERRORS]   https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-error-handling
  [LIMITS]   https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-limitations
  [OVERVIEW] https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-overview
and, where the pages are silent, from public clients run against live accounts:
  [ARTIE]    github.com/artie-labs/transfer, Snowpipe Streaming channel manager (hostname read as plain text, `_`
             replaced by `-`, 10 requests/s per channel, status fields)
  [REDPANDA] https://docs.redpanda.com/connect/components/outputs/snowflake_streaming_pipe/ ("Fields with no
             matching column are dropped by Snowflake")

Endpoints (all on this service's port; "ingest" ones are those a client sends to the ingest host):
  GET    /v2/streaming/hostname        the ingest host, plain text `127.0.0.1:PORT` (as [TUTORIAL] reads it
                                       with curl); `{"hostname": ...}` (the [REST] page's shape) after
                                       POST /admin/config {"streaming_hostname_format": "json"}
  POST   /oauth/token                  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&scope=<list>,
                                       authorised like the SQL API (key-pair JWT or PAT); scope is a
                                       space-separated list holding the hostname and optionally
                                       `session:role:<ROLE>`; answers the scoped token as plain text
  PUT    /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}          (ingest)
  POST   /v2/streaming/data/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}/rows (ingest)
         ?continuationToken=..&startOffsetToken=..&endOffsetToken=..  (older `offsetToken` = end token)
  DELETE /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}/channels/{channel}          (ingest)
  POST   /v2/streaming/databases/{db}/schemas/{schema}/pipes/{pipe}:bulk-channel-status         (ingest)

The local model:
- Pipes: only each table's default pipe `<TABLE>-STREAMING`; pipes from `CREATE PIPE` are file Snowpipe's
  (local/snowpipe_api.py) and are not streaming pipes.
  Database, schema, pipe and channel names are case-insensitive ([REST]); a channel answers with the
  name it was first opened with.
- An ingest request whose Host header holds `_` is refused 400 ERR_INVALID_HOST ([TUTORIAL]: an account
  name with `_` fails at the ingest service; clients must send `-`).
- Channel endpoints take only a scoped token (401 for the account's JWT or PAT).
- A pipe holds at most 2,000 channels ([LIMITS]); one more is refused 400 ERR_TOO_MANY_CHANNELS (our
  name). A channel takes at most 10 requests per second ([LIMITS]); more answer 429.
- A continuation token carries (client sequencer, row sequencer). Opening bumps the client sequencer
  ([REST]); an append with an older one fails 400 STALE_CONTINUATION_TOKEN_SEQUENCER ([REST]'s example);
  an append whose row sequencer is not the channel's current one (a resent request whose first copy was
  applied) fails 400 STALE_CONTINUATION_TOKEN_ROW_SEQUENCER (our name, after the former).
- An accepted append is NOT committed: it commits later, in order per channel, after a delay drawn
  uniformly from LOCAL_SF_STREAMING_COMMIT_DELAY_MS ("min-max" ms, default 300-1500; [OVERVIEW]: data is
  queryable within seconds); with the timing model on, from its ingest latency (5-10 s, [OVERVIEW]) and
  the append's answer takes the model's append time (local/warehouse_timing.py). Channels commit in
  parallel, each on its own DuckDB connection beside the SQL statements (local/exec_lock.py). Only then are its rows inserted (visible to SQL), the channel's
  `last_committed_offset_token` set to its end offset token, and its counters counted.
- Opening a channel again discards every accepted-but-uncommitted append ([OVERVIEW]: resume from the
  last committed offset token). So does invalidation (admin fault, or the table's columns changing under
  an open channel: [OVERVIEW], "If the table schema is modified when ... channels are active, the
  channel must be reopened"): `channel_status_code` becomes ERR_CHANNEL_MUST_BE_REOPENED ([ERRORS]) and
  every append answers 409 until the channel is reopened ([ERRORS]: 409 = reopen the channel).
- A row the table refuses (type, NOT NULL) is not inserted at commit and is counted in
  `rows_error_count` with `last_error_message`, `last_error_offset_upper_bound` (the append's end offset
  token) and `last_error_timestamp` ([ERRORS]; the default pipe's ON_ERROR is CONTINUE, [LIMITS]). A field
  naming no column is dropped, the rest of the row lands ([REDPANDA]).
- Appends never take a table's DML lock (table_locks.py): that is the point of streaming.

Faults and settings (POST /admin/faults, POST /admin/config; see StreamingApi.admin):
  {"streaming_status": 408|409|429|500|503, "count": N}   refused before it is applied (409 also
                                                           invalidates the channel)
  {"streaming_drop_connection": true, "count": N, "after_apply": false|true}
  {"invalidate_channel": "<name>"}
  each optionally scoped: "channel": "<name>" and/or "pipe": "<name>"
  {"streaming_commit_delay_ms": [min, max]}  {"streaming_requests_per_second": R}
  {"streaming_channels_per_pipe": N}  {"streaming_hostname_format": "text"|"json"}
POST /admin/reset restores the settings (env or defaults) and clears faults and counters.
"""

from __future__ import annotations

import collections
import concurrent.futures
import gzip
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import parse_qs

import zstandard

import session_context

MAX_REQUEST_BYTES = 4 * 1024 * 1024  # [LIMITS]: 4 MB per request after compression ([REST] says 16 MB)
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # [REST] Exchange Scoped Token
SCOPED_TOKEN_SECONDS = 3600
DEFAULT_COMMIT_DELAY_MS = "300-1500"
DEFAULT_REQUESTS_PER_SECOND = 10.0  # [LIMITS] "Request rate: 10 requests per second (RPS)" per channel
DEFAULT_CHANNELS_PER_PIPE = 2000  # [LIMITS] "a single pipe can have up to 2,000 active channels"
# A date/time value DuckDB reads as Snowflake does: a 4-digit year from 0001 (strict_sql.py refuses the rest)
DATETIME_SPELLING = re.compile(r"(?!0000)\d{4}-")
COMMIT_WORKERS = 8  # channels committing at once
MUST_REOPEN = "ERR_CHANNEL_MUST_BE_REOPENED"  # [ERRORS] channel status code: reopen the channel
# Status codes of injected refusals. [ERRORS] gives the HTTP meanings (408, 429, 5xx: retry; 409: reopen),
# not body codes for these, so the codes are ours.
FAULT_CODES = {408: "ERR_REQUEST_TIMEOUT", 409: MUST_REOPEN, 429: "ERR_TOO_MANY_REQUESTS",
               500: "ERR_INTERNAL_ERROR", 503: "ERR_SERVICE_UNAVAILABLE"}

CHANNEL_RE = re.compile(
    r"/v2/streaming/(data/)?databases/([^/]+)/schemas/([^/]+)/pipes/([^/:]+)(?:/channels/([^/]+)(/rows)?|(:bulk-channel-status))"
)


class StreamingError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"code": self.code, "message": self.message}  # [REST] error body


def parse_delay(text: str) -> tuple[int, int]:
    """'min-max' (ms) → (min, max); one number means a fixed delay."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text or "")
    if not m:
        raise ValueError(f"commit delay must be 'min-max' in ms, not {text!r}")
    lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
    if lo > hi:
        raise ValueError(f"commit delay min {lo} > max {hi}")
    return lo, hi


@dataclass
class Settings:
    """What tests may change through /admin/config; `defaults()` is what /admin/reset restores."""

    commit_delay_ms: tuple[int, int]
    requests_per_second: float
    channels_per_pipe: int
    hostname_format: str = "text"

    @staticmethod
    def defaults() -> "Settings":
        return Settings(
            commit_delay_ms=parse_delay(os.environ.get("LOCAL_SF_STREAMING_COMMIT_DELAY_MS", DEFAULT_COMMIT_DELAY_MS)),
            requests_per_second=float(os.environ.get("LOCAL_SF_STREAMING_REQUESTS_PER_SECOND", DEFAULT_REQUESTS_PER_SECOND)),
            channels_per_pipe=int(os.environ.get("LOCAL_SF_STREAMING_CHANNELS_PER_PIPE", DEFAULT_CHANNELS_PER_PIPE)),
        )


@dataclass
class Append:
    """An accepted, not yet committed append."""

    rows: list[dict]
    start: str | None
    end: str | None
    accepted_at: float
    due_at: float


@dataclass
class Counters:
    accepted: int = 0
    committed: int = 0
    discarded: int = 0

    def as_dict(self) -> dict:
        return {"appends_accepted": self.accepted, "appends_committed": self.committed,
                "appends_discarded": self.discarded}


@dataclass
class Channel:
    db: str
    schema: str
    pipe: str
    name: str  # as first written ([REST]: names are case-insensitive; lookups use the upper-cased key)
    table: str
    columns: dict[str, str]  # the table's columns when the channel was (re)opened: upper → name
    client_seq: int = 0
    row_seq: int = 0
    committed_offset: str | None = None
    created_on_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    invalid_code: str | None = None
    pending: collections.deque = field(default_factory=collections.deque)
    rows_inserted: int = 0
    rows_parsed: int = 0
    rows_error_count: int = 0
    last_error_message: str | None = None
    last_error_offset: str | None = None
    last_error_timestamp: str | None = None
    latency_total_ms: float = 0.0
    counters: Counters = field(default_factory=Counters)
    commit_lock: threading.Lock = field(default_factory=threading.Lock)  # held while an append commits
    recent: collections.deque = field(default_factory=collections.deque)  # request times, rate limit

    def token(self) -> str:
        return f"{self.client_seq}_{self.row_seq}"

    def discard_pending(self) -> int:
        n = len(self.pending)
        self.counters.discarded += n
        self.pending.clear()
        return n

    def status(self) -> dict:
        """The [ERRORS] page's channel status fields; counters count committed appends only."""
        committed = self.counters.committed
        return {
            "database_name": self.db,
            "schema_name": self.schema,
            "pipe_name": self.pipe,
            "channel_name": self.name,
            "channel_status_code": self.invalid_code or "SUCCESS",
            "last_committed_offset_token": self.committed_offset,
            "created_on_ms": self.created_on_ms,
            "rows_inserted": self.rows_inserted,
            "rows_parsed": self.rows_parsed,
            "rows_error_count": self.rows_error_count,
            "last_error_offset_upper_bound": self.last_error_offset,
            "last_error_message": self.last_error_message,
            "last_error_timestamp": self.last_error_timestamp,
            "snowflake_avg_processing_latency_ms": round(self.latency_total_ms / committed) if committed else 0,
        }


@dataclass
class Fault:
    kind: str  # "status" | "drop"
    count: int
    status: int = 0
    after_apply: bool = False
    channel: str | None = None  # upper-cased scope, None = any
    pipe: str | None = None

    def matches(self, pipe: str | None, channel: str | None) -> bool:
        return (self.pipe is None or self.pipe == pipe) and (self.channel is None or self.channel == channel)


class StreamingApi:
    """State and handlers; `engine` is the SQL service's Engine (fakesnow, exec lock)."""

    def __init__(self, engine: Any, check_auth: Callable[[Any], None], hostname: str):
        self.engine = engine
        self.check_auth = check_auth
        self.hostname = hostname
        self.lock = threading.Lock()
        self.scoped: dict[str, tuple[float, str]] = {}  # token → (expires, role)
        self.channels: dict[tuple[str, str, str, str], Channel] = {}
        self.reset()
        self.wake = threading.Event()
        threading.Thread(target=self._commit_loop, name="streaming-commits", daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.settings = Settings.defaults()
            self.faults: list[Fault] = []
            self.counters = Counters()
            for ch in self.channels.values():
                ch.counters = Counters()

    # -- entry point ------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers: Any, raw: bytes) -> tuple[int, Any] | None:
        """(status, body) for a streaming path, None for any other path; body `bytes` is plain text,
        "drop" drops the connection."""
        if path == "/v2/streaming/hostname" and method == "GET":
            self.check_auth(headers)
            return self.hostname_answer()
        if path == "/oauth/token" and method == "POST":
            return self.exchange(headers, raw)
        m = CHANNEL_RE.fullmatch(path)
        if not m:
            return None
        try:
            return self.ingest(method, path, m, query, headers, raw)
        except StreamingError as e:
            return e.status, e.body()

    def ingest(self, method: str, path: str, m: re.Match, query: dict, headers: Any, raw: bytes) -> tuple[int, Any]:
        data, db, schema, pipe, channel, rows, bulk = m.groups()
        db, schema, pipe = db.upper(), schema.upper(), pipe.upper()
        key = channel.upper() if channel else None
        self.check_host(headers)
        self.check_scoped(headers)
        if key:
            self.check_rate(db, schema, pipe, key)
        if (fault := self.take_fault("status", pipe, key)) is not None:
            return self.refuse(fault, db, schema, pipe, key)
        drop = self.take_fault("drop", pipe, key)
        if drop is not None and not drop.after_apply:
            return 0, "drop"
        answer = self.route(method, path, data, db, schema, pipe, channel, rows, bulk, query, headers, raw)
        return (0, "drop") if drop is not None else answer

    def route(self, method, path, data, db, schema, pipe, channel, rows, bulk, query, headers, raw) -> tuple[int, Any]:
        if bulk and method == "POST" and not data:
            return 200, self.bulk_status(db, schema, pipe, raw)
        if channel and rows and data and method == "POST":
            return 200, self.append(db, schema, pipe, channel, query, headers, raw)
        if channel and not rows and not data and method == "PUT":
            return 200, self.open(db, schema, pipe, channel, raw)
        if channel and not rows and not data and method == "DELETE":
            return 200, self.drop(db, schema, pipe, channel.upper())
        raise StreamingError(404, "ERR_NOT_FOUND", f"{method} {path} is not an endpoint.")

    # -- hostname and auth ------------------------------------------------------------------
    def hostname_answer(self) -> tuple[int, Any]:
        # [TUTORIAL] reads the answer as the host itself (`INGEST_HOST=$(curl ...)`), as [ARTIE] does against
        # live accounts; the [REST] page shows {"hostname": "string"}. Plain text unless configured.
        if self.settings.hostname_format == "json":
            return 200, {"hostname": self.hostname}
        return 200, self.hostname.encode()

    @staticmethod
    def check_host(headers: Any) -> None:
        # [TUTORIAL]: an account name with `_` "can cause an internal error when calling the ingestion service";
        # clients must replace every `_` with `-` in the ingest host. Refused outright here.
        host = headers.get("Host") or ""
        if "_" in host:
            raise StreamingError(400, "ERR_INVALID_HOST", f"Host {host[:80]!r} holds '_': use '-' in the ingest host.")

    def exchange(self, headers: Any, raw: bytes) -> tuple[int, Any]:
        self.check_auth(headers)
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":  # [REST] Exchange Scoped Token: content_type
            return 400, {"code": "ERR_INVALID_REQUEST", "message": "Content-Type must be application/x-www-form-urlencoded."}
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != GRANT_TYPE:
            return 400, {"code": "ERR_INVALID_REQUEST", "message": f"grant_type must be {GRANT_TYPE}."}
        try:
            role = self.scope_role(form.get("scope") or "")
        except StreamingError as e:
            return e.status, e.body()
        token = "local-scoped-" + secrets.token_urlsafe(24)
        with self.lock:
            self.scoped[token] = (time.time() + SCOPED_TOKEN_SECONDS, role)
        return 200, token.encode()  # plain text, as live accounts answer ([ARTIE] reads the body as the token)

    def scope_role(self, scope: str) -> str:
        """The role the scope asks for (the user's default role without one). [REST]: scope is the account's
        hostname; Snowflake OAuth scopes are a space-separated list where `session:role:<ROLE>` picks the role
        (https://docs.snowflake.com/en/user-guide/oauth-custom#scopes). Roles are exact names, as SHOW returns
        them (session_context.py)."""
        items = scope.split()
        if self.hostname not in items:
            raise StreamingError(400, "ERR_INVALID_REQUEST", "scope must hold the account's streaming hostname.")
        known = session_context.roles()
        role = known[0] if known else "PUBLIC"
        for item in items:
            if item == self.hostname:
                continue
            if not item.startswith("session:role:"):
                raise StreamingError(400, "ERR_INVALID_REQUEST", f"Unknown scope item {item[:80]!r}.")
            role = item[len("session:role:"):]
            if role not in known:
                raise StreamingError(400, "ERR_INVALID_REQUEST", f"Role {role[:80]!r} does not exist or is not granted to the user.")
        return role

    def check_scoped(self, headers: Any) -> None:
        authz = headers.get("Authorization") or ""
        token = authz[7:].strip() if authz.startswith("Bearer ") else ""
        with self.lock:
            expires, _role = self.scoped.get(token, (0.0, ""))
        if expires < time.time():
            raise StreamingError(401, "ERR_UNAUTHORIZED", "A valid scoped token is required (POST /oauth/token).")

    # -- limits and faults ------------------------------------------------------------------
    def check_rate(self, db: str, schema: str, pipe: str, key: str) -> None:
        """[LIMITS]: 10 requests per second per channel: over it, within any one-second window → 429."""
        with self.lock:
            ch = self.channels.get((db, schema, pipe, key))
            if ch is None:
                return
            now = time.monotonic()
            while ch.recent and now - ch.recent[0] >= 1.0:
                ch.recent.popleft()
            if len(ch.recent) >= self.settings.requests_per_second:
                raise StreamingError(429, "ERR_TOO_MANY_REQUESTS",
                                     f"Channel {ch.name} is over {self.settings.requests_per_second:g} requests per second.")
            ch.recent.append(now)

    def take_fault(self, kind: str, pipe: str, key: str | None) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.kind == kind and f.matches(pipe, key):
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                    return f
        return None

    def refuse(self, fault: Fault, db: str, schema: str, pipe: str, key: str | None) -> tuple[int, dict]:
        """An injected refusal, before anything is applied. A 409 is what an invalidated channel answers,
        so the channel really is invalidated ([ERRORS])."""
        if fault.status == 409 and key:
            self.invalidate(key, pipe, only=(db, schema))
        code = FAULT_CODES.get(fault.status, "ERR_INJECTED")
        return fault.status, {"code": code, "message": f"Injected fault {fault.status}."}

    def admin(self, body: dict) -> None:
        """The streaming part of POST /admin/faults and /admin/config (raises ValueError on a bad value)."""
        count = int(body.get("count", 1))
        scope = {"channel": (body.get("channel") or "").upper() or None, "pipe": (body.get("pipe") or "").upper() or None}
        with self.lock:
            if "streaming_status" in body:
                status = int(body["streaming_status"])
                if status not in FAULT_CODES:
                    raise ValueError(f"streaming_status must be one of {sorted(FAULT_CODES)}")
                self.arm(Fault("status", count, status=status, **scope))
            if body.get("streaming_drop_connection"):
                self.arm(Fault("drop", count, after_apply=bool(body.get("after_apply")), **scope))
            self.configure(body)
        if "invalidate_channel" in body:
            self.invalidate(str(body["invalidate_channel"]).upper(), scope["pipe"])

    def arm(self, fault: Fault) -> None:
        """Arms `fault`; a count of 0 instead clears the armed faults of its kind within its scope (no
        scope: all of them), what a test's clean-up sends, as for the SQL API's faults."""
        if fault.count > 0:
            self.faults.append(fault)
            return
        self.faults = [f for f in self.faults
                       if not (f.kind == fault.kind and fault.channel in (None, f.channel) and fault.pipe in (None, f.pipe))]

    def configure(self, body: dict) -> None:
        s = self.settings
        if "streaming_commit_delay_ms" in body:
            lo, hi = (int(v) for v in body["streaming_commit_delay_ms"])
            if not 0 <= lo <= hi:
                raise ValueError("streaming_commit_delay_ms must be [min, max] with 0 <= min <= max")
            s.commit_delay_ms = (lo, hi)
        if "streaming_requests_per_second" in body:
            s.requests_per_second = float(body["streaming_requests_per_second"])
        if "streaming_channels_per_pipe" in body:
            s.channels_per_pipe = int(body["streaming_channels_per_pipe"])
        if "streaming_hostname_format" in body:
            if body["streaming_hostname_format"] not in ("text", "json"):
                raise ValueError("streaming_hostname_format must be 'text' or 'json'")
            s.hostname_format = body["streaming_hostname_format"]

    def stats(self) -> dict:
        with self.lock:
            return {
                **self.counters.as_dict(),
                "channels": {".".join(k): {**ch.counters.as_dict(), "pending": len(ch.pending),
                                           "channel_status_code": ch.invalid_code or "SUCCESS"}
                             for k, ch in self.channels.items()},
                "faults": [vars(f).copy() for f in self.faults],
                "commit_delay_ms": list(self.settings.commit_delay_ms),
                "requests_per_second": self.settings.requests_per_second,
                "channels_per_pipe": self.settings.channels_per_pipe,
                "hostname_format": self.settings.hostname_format,
            }

    # -- channels ---------------------------------------------------------------------------
    def table_of(self, db: str, schema: str, pipe: str) -> tuple[str, dict[str, str]]:
        """The pipe's table and its columns (upper-cased name → name)."""
        if not pipe.endswith("-STREAMING"):
            raise StreamingError(404, "ERR_PIPE_DOES_NOT_EXIST_OR_NOT_AUTHORIZED", f"Pipe {pipe} does not exist (only default pipes <TABLE>-STREAMING are served locally).")
        table = pipe[: -len("-STREAMING")]
        columns = self.columns(db, schema, table)
        if not columns:
            raise StreamingError(404, "ERR_TABLE_DOES_NOT_EXIST_NOT_AUTHORIZED", f"Table {db}.{schema}.{table} does not exist.")
        return table, columns

    def columns(self, db: str, schema: str, table: str) -> dict[str, str]:
        duck = self.engine.duck_cursor()
        try:
            with self.engine.exec_lock.shared():
                rows = duck.execute(
                    "SELECT column_name FROM information_schema.columns WHERE upper(table_catalog) = ? "
                    "AND upper(table_schema) = ? AND upper(table_name) = ? ORDER BY ordinal_position",
                    [db, schema, table],
                ).fetchall()
        except Exception:  # noqa: BLE001
            return {}
        finally:
            duck.close()
        return {r[0].upper(): r[0] for r in rows}

    def open(self, db: str, schema: str, pipe: str, name: str, raw: bytes) -> dict:
        """[REST] Open Channel: creates the channel or reopens it; reopening bumps the client sequencer and
        answers the last committed offset token. What was accepted but not committed is discarded
        ([OVERVIEW]: a reopened channel resumes from its committed offset), and an invalid status clears."""
        table, columns = self.table_of(db, schema, pipe)
        body = self.json_body(raw) if raw.strip() else {}
        ch = self.channel_for_open(db, schema, pipe, name, table, columns)
        with ch.commit_lock, self.lock:  # never while one of its appends is half committed
            self.counters.discarded += ch.discard_pending()
            ch.columns = columns  # a reopened channel sees the table as it is now
            ch.client_seq += 1
            ch.invalid_code = None
            if body.get("offset_token") is not None:  # [TUTORIAL] opens with {"offset_token": "0"}
                ch.committed_offset = str(body["offset_token"])
            return {"next_continuation_token": ch.token(), "channel_status": ch.status()}

    def channel_for_open(self, db, schema, pipe, name, table, columns) -> Channel:
        key = (db, schema, pipe, name.upper())
        with self.lock:
            if (ch := self.channels.get(key)) is not None:
                return ch
            in_pipe = sum(1 for k in self.channels if k[:3] == key[:3])
            if in_pipe >= self.settings.channels_per_pipe:  # [LIMITS] channels per pipe
                raise StreamingError(400, "ERR_TOO_MANY_CHANNELS",
                                     f"Pipe {pipe} already has {in_pipe} channels (limit {self.settings.channels_per_pipe}).")
            ch = self.channels[key] = Channel(db, schema, pipe, name, table, columns)
            return ch

    def drop(self, db: str, schema: str, pipe: str, key: str) -> dict:
        with self.lock:
            ch = self.channels.get((db, schema, pipe, key))
        if ch is None:
            raise StreamingError(404, "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED", f"Channel {key} does not exist.")
        with ch.commit_lock, self.lock:
            self.counters.discarded += ch.discard_pending()
            self.channels.pop((db, schema, pipe, key), None)
        return {}

    def bulk_status(self, db: str, schema: str, pipe: str, raw: bytes) -> dict:
        """[REST] bulk channel status: {"channel_statuses": {"<name as asked>": {...}}}, unknown names absent."""
        body = self.json_body(raw)
        names = body.get("channel_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise StreamingError(400, "ERR_INVALID_REQUEST", "channel_names must be an array of strings.")
        with self.lock:
            found = {n: self.channels.get((db, schema, pipe, n.upper())) for n in names}
            return {"channel_statuses": {n: ch.status() for n, ch in found.items() if ch is not None}}

    def invalidate(self, key: str, pipe: str | None = None, only: tuple[str, str] | None = None,
                   code: str = MUST_REOPEN) -> None:
        """Marks the channels so named invalid and discards what they accepted but did not commit."""
        with self.lock:
            targets = [ch for k, ch in self.channels.items()
                       if k[3] == key and (pipe is None or k[2] == pipe) and (only is None or k[:2] == only)]
        for ch in targets:
            with ch.commit_lock, self.lock:
                self.counters.discarded += ch.discard_pending()
                ch.invalid_code = code

    # -- append -----------------------------------------------------------------------------
    def append(self, db: str, schema: str, pipe: str, name: str, query: dict, headers: Any, raw: bytes) -> dict:
        """[REST] Append Rows: the answer means accepted, not committed."""
        with self.lock:
            ch = self.channels.get((db, schema, pipe, name.upper()))
        if ch is None:
            raise StreamingError(404, "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED", f"Channel {name} does not exist; open it first.")
        if len(raw) > MAX_REQUEST_BYTES:
            raise StreamingError(413, "ERR_PAYLOAD_TOO_LARGE", f"Request payload of {len(raw)} bytes exceeds the 4 MB limit.")
        client_seq, row_seq = self.continuation(query)
        rows = self.ndjson(self.decoded(headers, raw))
        # [TUTORIAL] sends startOffsetToken and endOffsetToken; older clients send one offsetToken (the end).
        end = query.get("endOffsetToken") or query.get("offsetToken")
        start = query.get("startOffsetToken") or end
        with self.lock:
            if ch.invalid_code:  # [ERRORS]: 409, reopen the channel
                raise StreamingError(409, ch.invalid_code, f"Channel {ch.name} is invalid; reopen it.")
            if client_seq != ch.client_seq:
                raise StreamingError(400, "STALE_CONTINUATION_TOKEN_SEQUENCER", "Channel sequencer in the continuation token is stale. Please reopen the channel")
            if row_seq != ch.row_seq:
                raise StreamingError(400, "STALE_CONTINUATION_TOKEN_ROW_SEQUENCER", "Row sequencer in the continuation token is stale. Please reopen the channel")
            ch.row_seq += 1
            now = time.monotonic()
            # the model's ingest-to-query latency when the timing model is on (local/warehouse_timing.py)
            due = now + self.engine.timing.commit_delay_seconds(self.settings.commit_delay_ms)
            ch.pending.append(Append(rows, start, end, now, due))
            ch.counters.accepted += 1
            self.counters.accepted += 1
            token = ch.token()
        self.wake.set()
        time.sleep(self.engine.timing.append_seconds())  # the ingest host's answer time, with the model on
        return {"next_continuation_token": token}

    @staticmethod
    def continuation(query: dict) -> tuple[int, int]:
        token = query.get("continuationToken")
        if not token:
            raise StreamingError(400, "ERR_INVALID_REQUEST", "continuationToken is required.")
        m = re.fullmatch(r"(\d+)_(\d+)", token)
        if not m:
            raise StreamingError(400, "ERR_INVALID_CONTINUATION_TOKEN", "The continuation token is not valid.")
        return int(m[1]), int(m[2])

    @staticmethod
    def decoded(headers: Any, raw: bytes) -> bytes:
        enc = (headers.get("Content-Encoding") or "").strip().lower()  # [REST]: gzip, zstd
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

    # -- commits ----------------------------------------------------------------------------
    def _commit_loop(self) -> None:
        """Commits due appends, oldest first per channel (an append waits for the one before it); channels
        commit in parallel, each on a worker of its own while it has due appends ([OVERVIEW]: channels are
        independent), so one table's commits never wait behind another's."""
        workers = concurrent.futures.ThreadPoolExecutor(COMMIT_WORKERS, thread_name_prefix="streaming-commit")
        busy: set[int] = set()
        busy_lock = threading.Lock()

        def commit(ch: Channel) -> None:
            try:
                self.commit_due(ch)
            except Exception as e:  # noqa: BLE001 - a commit bug must not stop every later commit
                print(f"[streaming] commit failed on {ch.name}: {type(e).__name__}: {e}", flush=True)
            finally:
                with busy_lock:
                    busy.discard(id(ch))
                self.wake.set()

        while True:
            self.wake.wait(0.02)
            self.wake.clear()
            with self.lock:
                now = time.monotonic()
                due = [ch for ch in self.channels.values() if ch.pending and ch.pending[0].due_at <= now]
            for ch in due:
                with busy_lock:
                    if id(ch) in busy:
                        continue
                    busy.add(id(ch))
                workers.submit(commit, ch)

    def commit_due(self, ch: Channel) -> None:
        while True:
            with ch.commit_lock:
                with self.lock:
                    if not ch.pending or ch.pending[0].due_at > time.monotonic() or ch.invalid_code:
                        return
                    ap = ch.pending.popleft()
                columns = self.columns(ch.db, ch.schema, ch.table)
                if columns != ch.columns:  # [OVERVIEW]: a schema change under an open channel → reopen
                    with self.lock:
                        ch.pending.appendleft(ap)
                        self.counters.discarded += ch.discard_pending()
                        ch.invalid_code = MUST_REOPEN
                    return
                inserted, errors, last_error = self.insert(ch.db, ch.schema, ch.table, columns, ap.rows)
                with self.lock:
                    self.record_commit(ch, ap, inserted, errors, last_error)

    def record_commit(self, ch: Channel, ap: Append, inserted: int, errors: int, last_error: str | None) -> None:
        ch.rows_parsed += len(ap.rows)
        ch.rows_inserted += inserted
        ch.rows_error_count += errors
        if last_error:  # [ERRORS]: last_error_offset_upper_bound, last_error_message, last_error_timestamp
            ch.last_error_message, ch.last_error_offset = last_error, ap.end
            ch.last_error_timestamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        if ap.end is not None:
            ch.committed_offset = ap.end
        ch.latency_total_ms += (time.monotonic() - ap.accepted_at) * 1000
        ch.counters.committed += 1
        self.counters.committed += 1

    def insert(self, db: str, schema: str, table: str, columns: dict, rows: list[dict]) -> tuple[int, int, str | None]:
        """Inserts the rows into the table (never through its DML lock): rows with the same fields in one
        statement; when that fails, row by row, so a row that does not fit is counted and the others land.
        Fields naming no column are dropped ([REDPANDA])."""
        inserted = errors = 0
        last_error = None
        groups: dict[tuple, list[list]] = {}
        for row in rows:
            known = {columns[k.upper()]: v for k, v in row.items() if k.upper() in columns}
            groups.setdefault(tuple(known), []).append([self.sql_value(v) for v in known.values()])
        with self.engine.exec_lock.shared():  # an INSERT: beside other DML (local/exec_lock.py)
            conn = self.engine.connect(database=db, schema=schema, paramstyle="qmark")
            try:
                cur = conn.cursor()
                for names, values in groups.items():
                    # the whole group straight into DuckDB first (fakesnow's SQL rewrite of a
                    # many-row VALUES list is what costs); on any refusal the rows go one by one
                    # through fakesnow, whose errors are Snowflake's
                    if names and len(values) > 1 and self.try_insert_direct(conn, db, schema, table, names, values):
                        inserted += len(values)
                        continue
                    if names and len(values) > 1 and self.try_insert(cur, table, names, values):
                        inserted += len(values)
                        continue
                    for one in values:
                        try:
                            self.try_insert(cur, table, names, [one], raise_error=True)
                            inserted += 1
                        except Exception as e:  # noqa: BLE001 - ON_ERROR = CONTINUE: count it, go on
                            errors += 1
                            last_error = f"{type(e).__name__}: {str(e)[:200]}"
            finally:
                conn.close()
                self.engine.fs.results_cache.clear()
        return inserted, errors, last_error

    @staticmethod
    def sql_value(v: Any) -> Any:
        return json.dumps(v, separators=(",", ":"), ensure_ascii=False) if isinstance(v, (dict, list)) else v

    @staticmethod
    def try_insert_direct(conn: Any, db: str, schema: str, table: str, names: tuple, values: list[list]) -> bool:
        """One multi-row INSERT on the connection's DuckDB connection, in a transaction of its own: all or none.
        Only where DuckDB refuses at least what Snowflake (and strict_sql.py) refuses: DuckDB takes years past 9999
        and stores a VARIANT's plain string as written, so a group with a date/time value not spelt YYYY-… or a
        value for a VARIANT/OBJECT/ARRAY column goes through fakesnow instead."""
        duck = conn._duck_conn  # noqa: SLF001
        if not StreamingApi.direct_is_strict(duck, db, schema, table, names, values):
            return False
        quote = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
        marks = "(" + ", ".join("?" for _ in names) + ")"
        sql = (f"INSERT INTO {quote(db)}.{quote(schema)}.{quote(table)} ({', '.join(quote(n) for n in names)}) "
               f"VALUES {', '.join(marks for _ in values)}")
        try:
            duck.execute(sql, [v for row in values for v in row])
            return True
        except Exception:  # noqa: BLE001 - the slow path tells which row and why
            return False

    @staticmethod
    def direct_is_strict(duck: Any, db: str, schema: str, table: str, names: tuple, values: list[list]) -> bool:
        """Whether DuckDB's own refusals cover Snowflake's for these values (see try_insert_direct)."""
        types = dict(duck.execute(
            "SELECT column_name, upper(data_type) FROM information_schema.columns WHERE table_catalog = ? "
            "AND table_schema = ? AND table_name = ?", [db, schema, table]).fetchall())
        for i, name in enumerate(names):
            typ = types.get(name, "")
            if typ.startswith(("JSON", "STRUCT", "MAP", "LIST")) or typ.endswith("[]"):
                return False
            if typ.startswith(("DATE", "TIME")) and not all(
                    v is None or (isinstance(v, str) and DATETIME_SPELLING.match(v)) for v in (row[i] for row in values)):
                return False
        return True

    @staticmethod
    def try_insert(cur: Any, table: str, names: tuple, values: list[list], raise_error: bool = False) -> bool:
        if not names:
            sql, params = f'INSERT INTO "{table}" DEFAULT VALUES', []
        else:
            cols = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
            marks = "(" + ", ".join("?" for _ in names) + ")"
            sql = f'INSERT INTO "{table}" ({cols}) VALUES {", ".join(marks for _ in values)}'
            params = [v for row in values for v in row]
        try:
            cur.execute(sql, params)
            return True
        except Exception:  # noqa: BLE001
            if raise_error:
                raise
            return False

    @staticmethod
    def json_body(raw: bytes) -> dict:
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise StreamingError(400, "ERR_INVALID_REQUEST", "Body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise StreamingError(400, "ERR_INVALID_REQUEST", "Body must be a JSON object.")
        return body
