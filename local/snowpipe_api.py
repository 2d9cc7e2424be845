"""The Snowpipe REST API (file Snowpipe: insertFiles, insertReport, loadHistoryScan) and pipes in SQL, over fakesnow.

NOT Snowpipe Streaming (that is local/streaming_api.py). Written from Snowflake's pages (each rule cites its tag):
  [REST]     https://docs.snowflake.com/en/user-guide/data-load-snowpipe-rest-apis (endpoints, limits, fields, codes)
  [RESTOV]   https://docs.snowflake.com/en/user-guide/data-load-snowpipe-rest-overview (a 200 means queued, not loaded)
  [INTRO]    https://docs.snowflake.com/en/user-guide/data-load-snowpipe-intro (load history "stored in the metadata
             of the pipe for 14 days", bulk COPY's in the table's for 64 days; a file is not loaded again by path and
             name "even if they were later modified (i.e. have a different eTag)")
  [CREATE]   https://docs.snowflake.com/en/sql-reference/sql/create-pipe (COPY options a pipe refuses)
  [COPY]     https://docs.snowflake.com/en/sql-reference/sql/copy-into-table (ON_ERROR default: Snowpipe SKIP_FILE)
  [PREPARE]  https://docs.snowflake.com/en/user-guide/data-load-considerations-prepare (Snowpipe loads new data
             "typically within a minute"; no SLA)
  [LOADHIST] https://docs.snowflake.com/en/sql-reference/info-schema/load_history (the view leaves Snowpipe out)
  [COPYHIST] https://docs.snowflake.com/en/sql-reference/functions/copy_history (14 days; dropping or recreating a
             pipe drops its load history)
  [KEYPAIR]  https://docs.snowflake.com/en/user-guide/key-pair-auth (JWT: iss ACCOUNT.USER.SHA256:fp, sub, exp <= 1h)
and, where the pages are thin, the public ingest SDKs run against live accounts:
  [PY]       github.com/snowflakedb/snowflake-ingest-python snowflake/ingest/simple_ingest_manager.py (sends
             `Authorization: BEARER <jwt>` and no token-type header), utils/network.py (retries 408 and 5xx, not 429)
  [JAVA]     github.com/snowflakedb/snowflake-ingest-java connection/RequestBuilder.java (paths; insertFiles
             `showSkippedFiles`; insertReport `recentSeconds`, `beginMark`; loadHistoryScan: startTimeInclusive
             required, "a 400 will be returned if this query parameter is missing", an endTimeExclusive later than
             now means now), IngestResponse.java (requestId, responseCode, skippedFiles), HistoryResponse.java and
             HistoryRangeResponse.java (fields), utils/HttpUtil.java (retries 408, 5xx and a lost answer; not 429)
  [JAVAPR4]  github.com/snowflakedb/snowflake-ingest-java pull 4 (a live LOAD_FAILED entry: rowsInserted 0,
             errorsSeen, errorLimit 1, firstError..., complete true)

Endpoints (on the service's port; {pipe} is `DB.SCHEMA.PIPE`, case-sensitive [REST]: matched exactly against the
stored names, so an unquoted pipe is `MYDB.MYSCHEMA.MYPIPE`; a part may be double-quoted, URL-encoded):
  POST /v1/data/pipes/{pipe}/insertFiles?requestId=..[&showSkippedFiles=true]
       Content-Type application/json {"files": [{"path": "..", "size": n}]} or text/plain (one path a line) [REST]
       → 200 {"requestId", "responseCode": "SUCCESS"} (+ "skippedFiles" with showSkippedFiles=true [JAVA])
  GET  /v1/data/pipes/{pipe}/insertReport?requestId=..[&beginMark=..][&recentSeconds=n]
  GET  /v1/data/pipes/{pipe}/loadHistoryScan?startTimeInclusive=..[&endTimeExclusive=..]&requestId=..
Errors: 400 malformed or over a limit, 401 not a valid key-pair JWT, 404 unknown pipe ("pipeName not recognized",
[REST]), 429 rate limit, 500/503 (faults). [REST] gives only the HTTP codes; the body is ours, shaped like
Snowflake's REST envelope: {"data": null, "code": "<6 digits>", "message": .., "success": false, "headers": null}.

The rules:
- Auth: `Authorization: Bearer <jwt>` (scheme in any case: [PY] sends BEARER); the token-type header absent ([PY],
  [JAVA] send none) or KEYPAIR_JWT; the JWT checked like the SQL API's ([KEYPAIR]). Anything else → 401.
- insertFiles: at most 5,000 files a request, each path at most 1,024 bytes in UTF-8 ([REST]); otherwise 400, and
  nothing is queued. A 200 means queued, not loaded ([REST], [RESTOV]). Each file loads later, after a delay drawn
  from LOCAL_SF_SNOWPIPE_LOAD_DELAY_MS ("min-max" ms, default 1000-5000; [PREPARE]: typically within a minute,
  [REST]: "within a few minutes"; no SLA).
- A load runs the pipe's COPY for that one file (FILES = ('<path>'), the path relative to the pipe's FROM location)
  through the SQL API's own COPY (file formats, MATCH_BY_COLUMN_NAME, INCLUDE_METADATA, schema evolution, errors as
  COPY words them). ON_ERROR: SKIP_FILE by default for Snowpipe ([COPY]); the file is loaded whole or not at all
  (run as ABORT_STATEMENT on one file, which is SKIP_FILE). ON_ERROR = CONTINUE / SKIP_FILE_n are accepted but also
  load a file whole or not at all (stricter: PARTIALLY_LOADED is never reported locally).
- Load metadata is the pipe's, by path only, 14 days ([INTRO]): a path loaded within 14 days (test clock,
  load_history.now()) or already queued is skipped (counted in duplicates_skipped), even if its content changed. It
  is not the table's: a pipe load neither reads nor writes the table's COPY load metadata (64 days), and bulk COPY
  does not see pipe loads ([INTRO]). CREATE OR REPLACE / DROP PIPE drop it and the history ([COPYHIST]). A failed
  load records no metadata: the file can be submitted again.
- A file missing from the stage at load time is LOAD_FAILED with systemError (our choice: [REST] is silent).
- insertReport: only loads that finished are events ([REST]: "An event occurs when data from a file ... has been
  committed to the table"); a queued file is absent and counted in statistics.activeFilesCount. Events are kept 10
  minutes and at most the 10,000 latest ([REST]). beginMark is the nextBeginMark of an earlier answer: events after
  it; completeResult is false when an event after the supplied beginMark was dropped ([JAVA] HistoryResponse). An
  unparsable beginMark → 400.
- loadHistoryScan: ISO-8601 times, startTimeInclusive required ([JAVA]); files whose lastInsertTime is in
  [start, end) within the 14 days kept ([COPYHIST]); at most 10,000 a call ([REST]), completeResult false when
  more; rangeStartTime/rangeEndTime are the oldest and latest lastInsertTime returned. [REST]: "rate limited ...
  designed to allow each history record to be read a handful of times": a scan returning a record already returned
  5 times answers 429.
- 429: [REST] documents "Request rate limit exceeded" without a number: at most
  LOCAL_SF_SNOWPIPE_REQUESTS_PER_SECOND (default 20) requests a second per pipe. Neither SDK retries 429 ([PY],
  [JAVA]): the client must.
- SQL: CREATE [OR REPLACE] PIPE [IF NOT EXISTS] <name> [AUTO_INGEST = FALSE] [COMMENT = '..'] AS COPY INTO <table>
  FROM @stage[/path] | (SELECT .. FROM @stage[/path]) ...; names resolve like tables (unquoted upper-cased, quoted
  exact; database/schema from the session). Refused ([CREATE]): FILES, ON_ERROR = ABORT_STATEMENT, SIZE_LIMIT,
  PURGE, FORCE, RETURN_FAILED_ONLY, VALIDATION_MODE, LOAD_UNCERTAIN_FILES; and locally: PATTERN, AUTO_INGEST = TRUE
  (no cloud notifications here), a FROM that is not a stage, a table that does not exist. DROP PIPE [IF EXISTS],
  SHOW PIPES [LIKE '..'] [IN ACCOUNT | DATABASE d | SCHEMA s], DESC[RIBE] PIPE.
- INFORMATION_SCHEMA.LOAD_HISTORY does not show pipe loads ([LOADHIST]).

Faults and settings (POST /admin/faults, /admin/config; see SnowpipeApi.admin), each fault optionally "pipe"-scoped:
  {"snowpipe_status": 429|500|503, "count": N}     refused before anything is done
  {"snowpipe_drop_connection": true, "count": N, "after_apply": bool}  after_apply: files queued, answer lost
  {"snowpipe_fail_load": "<path substring>", "count": N}  those loads fail (LOAD_FAILED, systemError)
  {"snowpipe_load_delay_ms": [min, max]}  {"snowpipe_requests_per_second": R}  {"snowpipe_report_max_events": N}
POST /admin/reset restores the settings, clears faults and counters (pipes, queues and metadata stay).
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import unquote

import snowflake.connector.errors as sf_errors

import load_history
from streaming_api import parse_delay

MAX_FILES = 5000  # [REST] "The post can contain at most 5000 files."
MAX_PATH_BYTES = 1024  # [REST] "Each file path given must be <= 1024 bytes long when serialized as UTF-8."
EVENT_RETENTION_S = 600  # [REST] insertReport: "Events are retained for a maximum of 10 minutes."
MAX_EVENTS = 10000  # [REST] insertReport: "Only the 10,000 most recent events are retained."
MAX_SCAN = 10000  # [REST] loadHistoryScan: "a maximum of 10,000 items returned"
HISTORY_S = 14 * 86400  # [INTRO] pipe load metadata, [COPYHIST] history: 14 days
SCAN_READS = 5  # [REST] "allow each history record to be read a handful of times"
DEFAULT_LOAD_DELAY_MS = "1000-5000"
DEFAULT_REQUESTS_PER_SECOND = 20.0
FAULT_CODES = {429: "390429", 500: "390500", 503: "390503"}
# [CREATE] copy options a pipe does not support; the last ones are the local stand-in's own refusals
REFUSED_OPTIONS = ("FILES", "SIZE_LIMIT", "PURGE", "FORCE", "RETURN_FAILED_ONLY", "VALIDATION_MODE",
                   "LOAD_UNCERTAIN_FILES", "PATTERN")
IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
NAME = rf"{IDENT}(?:\s*\.\s*{IDENT}){{0,2}}"
CREATE_RE = re.compile(rf"^\s*CREATE\s+(OR\s+REPLACE\s+)?PIPE\s+(IF\s+NOT\s+EXISTS\s+)?({NAME})\s*(.*)$", re.I | re.S)
DROP_RE = re.compile(rf"^\s*DROP\s+PIPE\s+(IF\s+EXISTS\s+)?({NAME})\s*;?\s*$", re.I | re.S)
DESC_RE = re.compile(rf"^\s*DESC(?:RIBE)?\s+PIPE\s+({NAME})\s*;?\s*$", re.I | re.S)
SHOW_RE = re.compile(rf"^\s*SHOW\s+PIPES(?:\s+LIKE\s+'((?:[^']|'')*)')?(?:\s+IN\s+(ACCOUNT|DATABASE|SCHEMA)(?:\s+({NAME}))?)?"
                     r"\s*;?\s*$", re.I | re.S)
PIPE_SQL_RE = re.compile(r"^\s*(CREATE\s+(OR\s+REPLACE\s+)?PIPE|DROP\s+PIPE|DESC(RIBE)?\s+PIPE|SHOW\s+PIPES)\b", re.I)
PROP_RE = re.compile(r"\s*(\w+)\s*=\s*('(?:[^']|'')*'|\w+)\s*", re.S)
FROM_RE = re.compile(r"\bFROM\s*(\(\s*SELECT\b.*?\bFROM\s*)?@([^\s)]+)", re.I | re.S)
INTO_RE = re.compile(rf"^\s*COPY\s+INTO\s+({NAME})", re.I | re.S)
SHOW_COLUMNS = ("created_on", "name", "database_name", "schema_name", "definition", "owner", "notification_channel",
                "comment", "integration", "pattern", "error_integration", "owner_role_type", "invalid_reason")


class SnowpipeError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def body(self) -> dict:
        return {"data": None, "code": self.code, "message": self.message, "success": False, "headers": None}


def sql_error(message: str, errno: int = 2040, sqlstate: str = "0A000") -> sf_errors.ProgrammingError:
    return sf_errors.ProgrammingError(msg=message, errno=errno, sqlstate=sqlstate)


def iso(t: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds, as [REST]'s examples ("2017-06-21T04:47:41.453Z")."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str, what: str) -> float:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SnowpipeError(400, "390400", f"{what} is not an ISO-8601 timestamp.") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def split_name(text: str) -> list[str]:
    return [p.strip() for p in re.findall(IDENT, text)]


def ident(part: str) -> str:
    """Snowflake's identifier rule: unquoted → upper case, quoted → exact."""
    return part[1:-1].replace('""', '"') if part.startswith('"') else part.upper()


def strip_strings(sql: str) -> str:
    return re.sub(r"'(?:[^'\\]|''|\\.)*'", "''", sql)


@dataclass
class Settings:
    load_delay_ms: tuple[int, int]
    requests_per_second: float
    max_events: int = MAX_EVENTS

    @staticmethod
    def defaults() -> "Settings":
        """From the environment; a bad value fails start-up naming its variable."""
        try:
            delay = parse_delay(os.environ.get("LOCAL_SF_SNOWPIPE_LOAD_DELAY_MS", DEFAULT_LOAD_DELAY_MS))
        except ValueError as e:
            raise ValueError(f"LOCAL_SF_SNOWPIPE_LOAD_DELAY_MS: {e}") from None
        try:
            rate = float(os.environ.get("LOCAL_SF_SNOWPIPE_REQUESTS_PER_SECOND", DEFAULT_REQUESTS_PER_SECOND))
        except ValueError:
            raise ValueError("LOCAL_SF_SNOWPIPE_REQUESTS_PER_SECOND must be a number") from None
        return Settings(load_delay_ms=delay, requests_per_second=rate)


@dataclass
class Counters:
    requests: int = 0
    files_queued: int = 0
    files_loaded: int = 0
    files_failed: int = 0
    duplicates_skipped: int = 0


@dataclass
class Queued:
    path: str
    size: int | None
    received: float  # test clock
    due: float  # monotonic


@dataclass
class Pipe:
    database: str
    schema: str
    name: str
    definition: str  # the COPY statement as written
    comment: str | None
    table: str
    stage: str  # "@STAGE/path/" as written in FROM
    error_limit: int
    created_on: float = field(default_factory=load_history.now)
    loaded: dict[str, float] = field(default_factory=dict)  # path → load time: the pipe's load metadata
    queue: dict[str, Queued] = field(default_factory=dict)
    events: collections.deque = field(default_factory=collections.deque)  # (seq, entry), insertReport
    history: list[dict] = field(default_factory=list)  # loadHistoryScan entries (with "_t" and "_reads")
    seq: int = 0
    dropped_upto: int = 0  # every event with seq <= this was dropped (retention)
    counters: Counters = field(default_factory=Counters)
    recent: collections.deque = field(default_factory=collections.deque)  # request times, rate limit

    @property
    def fqn(self) -> str:
        return f"{self.database}.{self.schema}.{self.name}"


@dataclass
class Fault:
    kind: str  # status | drop | fail
    count: int
    status: int = 0
    after_apply: bool = False
    match: str = ""
    pipe: str | None = None


class SnowpipeApi:
    """Pipes, their queues and load metadata; `run_copy(database, schema, sql)` runs a COPY like the SQL API and
    answers (COPY result rows as dicts, None) or (None, (code, sqlstate, message)); `check_auth(headers)` raises
    on a bad JWT (its exception carries `code` and `message`)."""

    def __init__(self, run_copy: Callable[[str, str, str], tuple[list[dict] | None, tuple | None]],
                 check_auth: Callable[[Any], None], table_exists: Callable[[str, str, str], bool]):
        self.run_copy, self.check_auth, self.table_exists = run_copy, check_auth, table_exists
        self.lock = threading.Lock()
        self.pipes: dict[tuple[str, str, str], Pipe] = {}
        self.reset()
        self.wake = threading.Event()
        threading.Thread(target=self._load_loop, name="snowpipe-loads", daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.settings = Settings.defaults()
            self.faults: list[Fault] = []
            self.counters = Counters()
            for p in self.pipes.values():
                p.counters = Counters()

    # -- SQL ----------------------------------------------------------------------------------------------
    def sql(self, sql: str, database: str | None, schema: str | None) -> tuple[list[str], list[list]] | None:
        """(column names, rows) for a pipe statement, None for any other; raises the SQL error Snowflake gives."""
        if not PIPE_SQL_RE.match(sql):
            return None
        if m := CREATE_RE.match(sql):
            return self.create(m, sql, database, schema)
        if m := DROP_RE.match(sql):
            key = self.resolve(m[2], database, schema)
            with self.lock:
                if self.pipes.pop(key, None) is None and not m[1]:
                    raise sql_error(f"Pipe '{'.'.join(key)}' does not exist or not authorized.", 2003, "02000")
            return ["status"], [[f"{key[2]} successfully dropped."]]
        if m := DESC_RE.match(sql):
            key = self.resolve(m[1], database, schema)
            with self.lock:
                pipe = self.pipes.get(key)
            if pipe is None:
                raise sql_error(f"Pipe '{'.'.join(key)}' does not exist or not authorized.", 2003, "02000")
            return list(SHOW_COLUMNS), [self.show_row(pipe)]
        if m := SHOW_RE.match(sql):
            return self.show(m, database, schema)
        raise sql_error("SQL compilation error: pipe statement not understood by the local stand-in.", 1003, "42000")

    def resolve(self, text: str, database: str | None, schema: str | None) -> tuple[str, str, str]:
        parts = [ident(p) for p in split_name(text)]
        if len(parts) < 3 and schema is None or len(parts) < 2 and database is None:
            raise sql_error("Cannot perform operation. This session does not have a current schema. Call 'USE SCHEMA', "
                            "or use a qualified name.", 90106, "22000")
        if len(parts) == 1:
            return database, schema, parts[0]  # type: ignore[return-value]
        if len(parts) == 2:
            return database, parts[0], parts[1]  # type: ignore[return-value]
        return parts[0], parts[1], parts[2]

    def create(self, m: re.Match, sql: str, database: str | None, schema: str | None) -> tuple[list[str], list[list]]:
        replace, if_not_exists, name, rest = m[1], m[2], m[3], m[4]
        if replace and if_not_exists:
            raise sql_error("SQL compilation error: OR REPLACE and IF NOT EXISTS are incompatible.", 2025, "42601")
        key = self.resolve(name, database, schema)
        props, copy_sql = self.properties(rest)
        pipe = self.pipe_from_copy(key, copy_sql, props)
        with self.lock:
            if key in self.pipes and not replace:
                if if_not_exists:
                    return ["status"], [[f"{key[2]} already exists, statement succeeded."]]
                raise sql_error(f"SQL compilation error:\nObject '{key[2]}' already exists.", 2002, "42710")
            self.pipes[key] = pipe  # a recreated pipe starts without load metadata or history ([COPYHIST])
        return ["status"], [[f"Pipe {key[2]} successfully created."]]

    @staticmethod
    def properties(rest: str) -> tuple[dict[str, str], str]:
        """The pipe's properties before AS, and the COPY statement after it."""
        props: dict[str, str] = {}
        pos = 0
        while not re.match(r"AS\b", rest[pos:], re.I):
            pm = PROP_RE.match(rest, pos)
            if not pm:
                raise sql_error("SQL compilation error: syntax error in CREATE PIPE: expected AS <copy statement>.", 1003, "42000")
            props[pm[1].upper()] = pm[2]
            pos = pm.end()
        return props, rest[pos + 2:].strip().rstrip(";").strip()

    def pipe_from_copy(self, key: tuple[str, str, str], copy_sql: str, props: dict[str, str]) -> Pipe:
        if props.get("AUTO_INGEST", "FALSE").upper() != "FALSE":
            raise sql_error("AUTO_INGEST = TRUE needs cloud event notifications, which the local stack does not serve: "
                            "use AUTO_INGEST = FALSE and the REST API.")
        unknown = set(props) - {"AUTO_INGEST", "COMMENT"}
        if unknown:
            raise sql_error(f"Pipe properties {sorted(unknown)} are not supported by the local stack.")
        into = INTO_RE.match(copy_sql)
        source = FROM_RE.search(copy_sql)
        if not into or not source:
            raise sql_error("SQL compilation error: a pipe's statement must be COPY INTO <table> FROM @<stage>[/path] "
                            "or FROM (SELECT ... FROM @<stage>[/path]).", 1003, "42000")
        bare = strip_strings(copy_sql).upper()
        for option in REFUSED_OPTIONS:
            if re.search(rf"\b{option}\s*=", bare):
                raise sql_error(f"SQL compilation error: copy option {option} is not supported in a pipe's COPY.", 2040, "0A000")
        on_error = re.search(r"\bON_ERROR\s*=\s*'?(\w+)'?", bare)
        if on_error and on_error[1] == "ABORT_STATEMENT":
            raise sql_error("SQL compilation error: ON_ERROR = ABORT_STATEMENT is not supported in a pipe's COPY "
                            "(Snowpipe: SKIP_FILE by default).", 2040, "0A000")
        tdb, tschema, table = self.resolve(into[1], key[0], key[1])
        if not self.table_exists(tdb, tschema, table):
            raise sql_error(f"SQL compilation error:\nTable '{table}' does not exist or not authorized.", 2003, "42S02")
        skip_n = re.fullmatch(r"SKIP_FILE_(\d+)", on_error[1]) if on_error else None
        comment = props.get("COMMENT")
        return Pipe(key[0], key[1], key[2], copy_sql, comment[1:-1].replace("''", "'") if comment else None,
                    table, "@" + source[2], int(skip_n[1]) if skip_n else 1)

    def show(self, m: re.Match, database: str | None, schema: str | None) -> tuple[list[str], list[list]]:
        like, scope, scope_name = m[1], (m[2] or "").upper(), m[3]
        with self.lock:
            pipes = list(self.pipes.values())
        if scope == "SCHEMA":
            db, sch, _ = self.resolve((scope_name or "") + ".X" if scope_name else "X", database, schema)
            pipes = [p for p in pipes if (p.database, p.schema) == (db, sch)]
        elif scope == "DATABASE" or (not scope and database):
            db = ident(scope_name) if scope_name else database
            pipes = [p for p in pipes if p.database == db]
        if like is not None:
            pattern = re.escape(like.replace("''", "'")).replace("%", ".*").replace("_", ".")
            pipes = [p for p in pipes if re.fullmatch(pattern, p.name, re.I | re.S)]
        return list(SHOW_COLUMNS), [self.show_row(p) for p in sorted(pipes, key=lambda p: p.fqn)]

    @staticmethod
    def show_row(p: Pipe) -> list:
        return [iso(p.created_on), p.name, p.database, p.schema, p.definition, "LOADER_ROLE", None, p.comment, None,
                None, None, "ROLE", None]

    # -- REST entry point ---------------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers: Any, raw: bytes) -> tuple[int, Any]:
        """(status, body) for a /v1/data/pipes/ path; body "drop" drops the connection."""
        m = re.fullmatch(r"/v1/data/pipes/([^/]+)/(insertFiles|insertReport|loadHistoryScan)", path)
        try:
            if not m:
                raise SnowpipeError(404, "390404", f"{method} {path[:200]} is not an endpoint.")
            endpoint = m[2]
            if (method, endpoint) not in (("POST", "insertFiles"), ("GET", "insertReport"), ("GET", "loadHistoryScan")):
                raise SnowpipeError(405, "390405", f"{method} is not allowed on {endpoint}.")
            self.authorize(headers)
            pipe = self.pipe_of(unquote(m[1]))
            self.check_rate(pipe)
            if (fault := self.take_fault("status", pipe.fqn)) is not None:
                raise SnowpipeError(fault.status, FAULT_CODES[fault.status], f"Injected fault {fault.status}.")
            drop = self.take_fault("drop", pipe.fqn)
            if drop is not None and not drop.after_apply:
                return 0, "drop"
            answer = self.route(endpoint, pipe, query, headers, raw)
            return (0, "drop") if drop is not None else (200, answer)
        except SnowpipeError as e:
            return e.status, e.body()

    def route(self, endpoint: str, pipe: Pipe, query: dict, headers: Any, raw: bytes) -> dict:
        if endpoint == "insertFiles":
            return self.insert_files(pipe, query, headers, raw)
        if endpoint == "insertReport":
            return self.insert_report(pipe, query)
        return self.load_history_scan(pipe, query)

    def authorize(self, headers: Any) -> None:
        """[KEYPAIR] key-pair JWT only; [PY] writes the scheme BEARER and sends no token-type header."""
        authz = headers.get("Authorization") or ""
        scheme, _, token = authz.partition(" ")
        kind = (headers.get("X-Snowflake-Authorization-Token-Type") or "KEYPAIR_JWT").strip().upper()
        if scheme.lower() != "bearer" or not token.strip():
            raise SnowpipeError(401, "390101", "Authorization header not found or not of the form 'Bearer <jwt>'.")
        if kind != "KEYPAIR_JWT":
            raise SnowpipeError(401, "390101", f"Token type {kind[:40]} is not accepted by the Snowpipe REST API: "
                                "key-pair JWT only.")
        try:
            self.check_auth({"Authorization": f"Bearer {token.strip()}",
                             "X-Snowflake-Authorization-Token-Type": "KEYPAIR_JWT"})
        except Exception as e:  # noqa: BLE001 - the SQL API's AuthError: code and message
            raise SnowpipeError(401, getattr(e, "code", "390144"), getattr(e, "message", str(e))) from None

    def pipe_of(self, name: str) -> Pipe:
        """[REST]: pipeName is case-sensitive and fully qualified: each part matched exactly (quotes removed)."""
        parts = split_name(name)
        if len(parts) != 3 or ".".join(parts) != re.sub(r"\s*\.\s*", ".", name.strip()):
            raise SnowpipeError(404, "390404", f"Pipe {name[:200]!r} is not a fully qualified name DB.SCHEMA.PIPE.")
        key = tuple(p[1:-1].replace('""', '"') if p.startswith('"') else p for p in parts)
        with self.lock:
            pipe = self.pipes.get(key)  # type: ignore[arg-type]
        if pipe is None:
            raise SnowpipeError(404, "390404", "Specified object does not exist or not authorized. Pipe not found")
        return pipe

    def check_rate(self, pipe: Pipe) -> None:
        with self.lock:
            now = time.monotonic()
            while pipe.recent and now - pipe.recent[0] >= 1.0:
                pipe.recent.popleft()
            self.counters.requests += 1
            pipe.counters.requests += 1
            if len(pipe.recent) >= self.settings.requests_per_second:
                raise SnowpipeError(429, "390429", "Request rate limit exceeded.")
            pipe.recent.append(now)

    def take_fault(self, kind: str, fqn: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.kind == kind and f.pipe in (None, fqn):
                    f.count -= 1
                    if f.count <= 0:
                        self.faults.remove(f)
                    return f
        return None

    # -- insertFiles ---------------------------------------------------------------------------------------
    def insert_files(self, pipe: Pipe, query: dict, headers: Any, raw: bytes) -> dict:
        files = self.files_of(headers, raw)
        now, mono = load_history.now(), time.monotonic()
        skipped = []
        with self.lock:
            lo, hi = self.settings.load_delay_ms
            for path, size in files:
                if path in pipe.queue or self.loaded_recently(pipe, path, now):
                    skipped.append(path)
                    continue
                pipe.queue[path] = Queued(path, size, now, mono + random.uniform(lo, hi) / 1000)
            for c in (self.counters, pipe.counters):
                c.files_queued += len(files) - len(skipped)
                c.duplicates_skipped += len(skipped)
        self.wake.set()
        answer = {"requestId": query.get("requestId") or str(uuid.uuid4()), "responseCode": "SUCCESS"}
        if query.get("showSkippedFiles", "").lower() == "true":  # [JAVA] IngestResponse.skippedFiles
            answer["skippedFiles"] = skipped
        return answer

    @staticmethod
    def loaded_recently(pipe: Pipe, path: str, now: float) -> bool:
        t = pipe.loaded.get(path)
        return t is not None and now - t <= HISTORY_S  # [INTRO] by path, 14 days

    @staticmethod
    def files_of(headers: Any, raw: bytes) -> list[tuple[str, int | None]]:
        """[REST]: application/json {"files": [{"path", "size"?}]} or text/plain, one path a line (no size)."""
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SnowpipeError(400, "390400", "The body is not UTF-8.") from None
        if ctype == "text/plain":
            files = [(line.strip(), None) for line in text.splitlines() if line.strip()]
        elif ctype == "application/json":
            files = SnowpipeApi.json_files(text)
        else:
            raise SnowpipeError(400, "390400", "Content-Type must be application/json or text/plain.")
        if not files:
            raise SnowpipeError(400, "390400", "The request names no files.")
        if len(files) > MAX_FILES:
            raise SnowpipeError(400, "390400", f"The post can contain at most {MAX_FILES} files ({len(files)} given).")
        for path, _ in files:
            if len(path.encode("utf-8")) > MAX_PATH_BYTES:
                raise SnowpipeError(400, "390400", f"File path {path[:60]!r}... is longer than {MAX_PATH_BYTES} bytes.")
        return files

    @staticmethod
    def json_files(text: str) -> list[tuple[str, int | None]]:
        try:
            body = json.loads(text)
        except json.JSONDecodeError:
            raise SnowpipeError(400, "390400", "The body is not valid JSON.") from None
        entries = body.get("files") if isinstance(body, dict) else None
        if not isinstance(entries, list):
            raise SnowpipeError(400, "390400", 'The body must be {"files": [{"path": ..., "size": ...}]}.')
        files = []
        for i, f in enumerate(entries):
            if not isinstance(f, dict) or not isinstance(f.get("path"), str) or not f["path"].strip():
                raise SnowpipeError(400, "390400", f"files[{i}] must be an object with a non-empty string path.")
            size = f.get("size")
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                raise SnowpipeError(400, "390400", f"files[{i}].size must be a non-negative integer.")
            files.append((f["path"], size))
        return files

    # -- insertReport and loadHistoryScan ------------------------------------------------------------------
    def insert_report(self, pipe: Pipe, query: dict) -> dict:
        mark = query.get("beginMark")
        since = None
        if mark is not None:
            m = re.fullmatch(r"1_(\d+)", mark)
            if not m:
                raise SnowpipeError(400, "390400", f"beginMark {mark[:60]!r} is not a mark this pipe gave.")
            since = int(m[1])
        recent = query.get("recentSeconds")
        if recent is not None and not re.fullmatch(r"\d+", recent):
            raise SnowpipeError(400, "390400", "recentSeconds must be a whole number.")
        now = load_history.now()
        with self.lock:
            self.expire_events(pipe, now)
            events = [(s, e) for s, e in pipe.events if since is None or s > since]
            if recent is not None:
                events = [(s, e) for s, e in events if now - e["_t"] <= int(recent)]
            return {
                "pipe": pipe.fqn,
                "completeResult": since is None or since >= pipe.dropped_upto,
                "nextBeginMark": f"1_{pipe.seq}",
                "files": [self.public(e) for _, e in events],
                "statistics": {"activeFilesCount": len(pipe.queue)},
            }

    def expire_events(self, pipe: Pipe, now: float) -> None:
        while pipe.events and (now - pipe.events[0][1]["_t"] > EVENT_RETENTION_S
                               or len(pipe.events) > self.settings.max_events):
            pipe.dropped_upto = pipe.events.popleft()[0]
        pipe.history = [h for h in pipe.history if now - h["_t"] <= HISTORY_S]

    @staticmethod
    def public(entry: dict) -> dict:
        return {k: v for k, v in entry.items() if not k.startswith("_")}

    def load_history_scan(self, pipe: Pipe, query: dict) -> dict:
        if not query.get("startTimeInclusive"):
            raise SnowpipeError(400, "390400", "startTimeInclusive is required.")  # [JAVA]
        now = load_history.now()
        start = parse_iso(query["startTimeInclusive"], "startTimeInclusive")
        end = min(parse_iso(query["endTimeExclusive"], "endTimeExclusive"), now) if query.get("endTimeExclusive") else now
        with self.lock:
            self.expire_events(pipe, now)
            found = [h for h in pipe.history if start <= h["_t"] < end]
            page = found[:MAX_SCAN]
            if any(h["_reads"] >= SCAN_READS for h in page):
                raise SnowpipeError(429, "390429", "Request rate limit exceeded: load history records were read too "
                                    "often; narrow the time range or use insertReport.")
            for h in page:
                h["_reads"] += 1
            return {
                "pipe": pipe.fqn,
                "completeResult": len(found) <= MAX_SCAN,
                "startTimeInclusive": iso(start),
                "endTimeExclusive": iso(end),
                "rangeStartTime": iso(page[0]["_t"]) if page else None,
                "rangeEndTime": iso(page[-1]["_t"]) if page else None,
                "files": [self.public(h) for h in page],
            }

    # -- loads ---------------------------------------------------------------------------------------------
    def _load_loop(self) -> None:
        while True:
            self.wake.wait(0.02)
            self.wake.clear()
            with self.lock:
                mono = time.monotonic()
                due = [(p, q) for p in self.pipes.values() for q in p.queue.values() if q.due <= mono]
            for pipe, q in sorted(due, key=lambda pq: pq[1].due):
                try:
                    self.load(pipe, q)
                except Exception as e:  # noqa: BLE001 - one broken load must not stop the others
                    print(f"[snowpipe] load of {q.path} failed: {type(e).__name__}: {e}", flush=True)
                    self.finish(pipe, q, self.entry(pipe, q, None, system_error=f"{type(e).__name__}: {e}"))

    def load(self, pipe: Pipe, q: Queued) -> None:
        """Runs the pipe's COPY for one file (SKIP_FILE: whole or nothing), records the outcome."""
        fault = self.take_fault("fail", pipe.fqn) if self.fault_matches(pipe, q.path) else None
        if fault is not None:
            return self.finish(pipe, q, self.entry(pipe, q, None, system_error="Injected load failure."))
        rows, error = self.run_copy(pipe.database, pipe.schema, self.copy_for(pipe, q.path))
        if error is None and rows and rows[0].get("status") == "LOADED":
            return self.finish(pipe, q, self.entry(pipe, q, rows[0]))
        if error is None:  # COPY left the file out: not in the stage
            return self.finish(pipe, q, self.entry(pipe, q, None, system_error=f"Remote file '{q.path}' was not found "
                                                   f"in {pipe.stage}."))
        return self.finish(pipe, q, self.entry(pipe, q, None, first_error=error[2]))

    def fault_matches(self, pipe: Pipe, path: str) -> bool:
        with self.lock:
            return any(f.kind == "fail" and f.match in path and f.pipe in (None, pipe.fqn) for f in self.faults)

    @staticmethod
    def copy_for(pipe: Pipe, path: str) -> str:
        """The pipe's COPY for one file: ON_ERROR becomes ABORT_STATEMENT (one file: SKIP_FILE), FORCE = TRUE because
        the pipe's load metadata, not the table's, decides ([INTRO]); the service keeps no table metadata for it."""
        sql = re.sub(r"\bON_ERROR\s*=\s*'?\w+'?", "", pipe.definition, flags=re.I)
        literal = "'" + path.replace("'", "''") + "'"
        return f"{sql} FILES = ({literal}) ON_ERROR = ABORT_STATEMENT FORCE = TRUE"

    def entry(self, pipe: Pipe, q: Queued, row: dict | None, first_error: str | None = None,
              system_error: str | None = None) -> dict:
        """A file's entry, fields as [REST] and [JAVA] HistoryResponse.FileEntry name them; failures as [JAVAPR4]."""
        t = load_history.now()
        loaded = row is not None
        file_url = str(row.get("file")) if loaded else ""
        stage_location = file_url[: -len(q.path)] if loaded and file_url.endswith(q.path) else pipe.stage
        return {
            "path": q.path,
            "stageLocation": stage_location,
            "fileSize": q.size,
            "timeReceived": iso(q.received),
            "lastInsertTime": iso(t),
            "rowsInserted": int(row.get("rows_loaded") or 0) if loaded else 0,
            "rowsParsed": int(row.get("rows_parsed") or 0) if loaded else 0,
            "errorsSeen": int(row.get("errors_seen") or 0) if loaded else 1,
            "errorLimit": pipe.error_limit,
            "firstError": first_error,
            "firstErrorLineNum": None,
            "firstErrorCharacterPos": None,
            "firstErrorColumnName": None,
            "systemError": system_error,
            "complete": True,
            "status": "LOADED" if loaded else "LOAD_FAILED",
            "_t": t,
            "_reads": 0,
        }

    def finish(self, pipe: Pipe, q: Queued, entry: dict) -> None:
        with self.lock:
            if pipe.queue.get(q.path) is not q:
                return  # dropped or replaced meanwhile
            del pipe.queue[q.path]
            ok = entry["status"] == "LOADED"
            if ok:
                pipe.loaded[q.path] = entry["_t"]  # only a load records metadata: a failed file may come again
            for c in (self.counters, pipe.counters):
                if ok:
                    c.files_loaded += 1
                else:
                    c.files_failed += 1
            pipe.seq += 1
            pipe.events.append((pipe.seq, entry))
            pipe.history.append(entry)
            self.expire_events(pipe, entry["_t"])

    # -- admin ---------------------------------------------------------------------------------------------
    def admin(self, body: dict) -> None:
        """The Snowpipe part of POST /admin/faults and /admin/config (ValueError on a bad value)."""
        count = int(body.get("count", 1))
        pipe = body.get("pipe") or None
        with self.lock:
            if "snowpipe_status" in body:
                status = int(body["snowpipe_status"])
                if status not in FAULT_CODES:
                    raise ValueError(f"snowpipe_status must be one of {sorted(FAULT_CODES)}")
                self.arm(Fault("status", count, status=status, pipe=pipe))
            if body.get("snowpipe_drop_connection"):
                self.arm(Fault("drop", count, after_apply=bool(body.get("after_apply")), pipe=pipe))
            if "snowpipe_fail_load" in body:
                self.arm(Fault("fail", count, match=str(body["snowpipe_fail_load"]), pipe=pipe))
            self.configure(body)

    def arm(self, fault: Fault) -> None:
        """A count of 0 clears the armed faults of that kind (in that pipe, or all)."""
        if fault.count > 0:
            self.faults.append(fault)
        else:
            self.faults = [f for f in self.faults if not (f.kind == fault.kind and fault.pipe in (None, f.pipe))]

    def configure(self, body: dict) -> None:
        s = self.settings
        if "snowpipe_load_delay_ms" in body:
            lo, hi = (int(v) for v in body["snowpipe_load_delay_ms"])
            if not 0 <= lo <= hi:
                raise ValueError("snowpipe_load_delay_ms must be [min, max] with 0 <= min <= max")
            s.load_delay_ms = (lo, hi)
        if "snowpipe_requests_per_second" in body:
            s.requests_per_second = float(body["snowpipe_requests_per_second"])
        if "snowpipe_report_max_events" in body:
            s.max_events = int(body["snowpipe_report_max_events"])

    def stats(self) -> dict:
        with self.lock:
            return {
                **vars(self.counters),
                "pipes": {p.fqn: {**vars(p.counters), "queued": len(p.queue), "loaded_paths": len(p.loaded)}
                          for p in self.pipes.values()},
                "faults": [vars(f).copy() for f in self.faults],
                "load_delay_ms": list(self.settings.load_delay_ms),
                "requests_per_second": self.settings.requests_per_second,
                "report_max_events": self.settings.max_events,
            }
