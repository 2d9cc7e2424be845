"""Snowflake's stateful behaviours in the local SQL API service, over HTTP: case-sensitive request context
(local/session_context.py), COPY load metadata by path and checksum (local/load_history.py) and the per-table
DML lock queue (local/table_locks.py).

Starts its own stack on free ports unless LOCAL_SF_URL (and MOTO_URL) name one: a stack found on the default
ports may run other code than this checkout's.
Run: .venv/bin/python -m pytest local/tests/test_service_state.py -q
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from test_snowflake_service import (  # noqa: E402,F401 - fixtures are used by name
    Client,
    _reset,
    _setup_stage,
    bucket,
    client,
    db,
    spec,
    stack,
)

import table_locks  # noqa: E402


def raw(client: Client, body: dict, *, async_: bool = False) -> requests.Response:
    """Submits `body` as given (no default warehouse or role) and waits for the outcome unless async_."""
    params = {"requestId": str(uuid.uuid4())}
    if async_:
        params["async"] = "true"
    r = client._check("submit", client.http.post(f"{client.base}/api/v2/statements", params=params, json=body,
                                                 headers=client.headers(), timeout=30))
    while r.status_code == 202 and not async_:
        time.sleep(0.05)
        r = client.get(r.json()["statementHandle"])
    return r


def outcome(client: Client, handle: str, within: float = 30) -> requests.Response:
    deadline = time.time() + within
    while (r := client.get(handle)).status_code == 202:
        assert time.time() < deadline, f"{handle} still running"
        time.sleep(0.05)
    return r


def error(r: requests.Response) -> tuple[str, str, str]:
    assert r.status_code == 422, r.text
    b = r.json()
    return b["code"], b["sqlState"], b["message"]


# ------------------------------------------------------------------------------------------------
# 1. Request context: database, schema, warehouse and role are case-sensitive identifiers


def test_database_and_schema_resolve_case_sensitively(client, db):
    d, s = db["database"], db["schema"]
    client.run("CREATE TABLE T (ID NUMBER)", **db)
    client.run("INSERT INTO T VALUES (1)", **db)
    assert client.run("SELECT COUNT(*) FROM T", **db)["data"] == [["1"]]

    # the database was created unquoted: it is stored upper-case, "tdb_..." does not name it
    r = client.submit("SELECT COUNT(*) FROM T", database=d.lower(), schema=s)
    assert error(r) == (
        "090105", "22000",
        "Cannot perform SELECT. This session does not have a current database. Call 'USE DATABASE', or use a "
        "qualified name.",
    )
    # the session has no current database, but qualified names still work
    assert client.run(f"SELECT COUNT(*) FROM {d}.{s}.T", database=d.lower(), schema=s)["data"] == [["1"]]
    # schema: likewise, inside the (correctly named) database
    r = client.submit("SELECT COUNT(*) FROM T", database=d, schema=s.lower())
    assert error(r) == (
        "090106", "22000",
        "Cannot perform SELECT. This session does not have a current schema. Call 'USE SCHEMA', or use a "
        "qualified name.",
    )
    r = client.submit("INSERT INTO T VALUES (2)", database=d, schema="Raw")
    assert error(r)[0] == "090106"
    assert client.run(f"SELECT COUNT(*) FROM {s}.T", database=d, schema=s.lower())["data"] == [["1"]]
    # a database that does not exist at all behaves the same, and CREATE DATABASE works from there (as the
    # project's tests bootstrap: the new database named in the request before it exists)
    fresh = f"TDB_{uuid.uuid4().hex[:8].upper()}"
    client.run(f"CREATE DATABASE IF NOT EXISTS {fresh}", database=fresh, schema="PUBLIC")
    client.run(f"CREATE SCHEMA IF NOT EXISTS {fresh}.S", database=fresh, schema="PUBLIC")
    client.run("CREATE TABLE X (ID NUMBER)", database=fresh, schema="S")
    assert error(client.submit("SELECT * FROM X", database=fresh.lower(), schema="S"))[0] == "090105"


def test_quoted_lower_case_database_needs_its_exact_name(client):
    name = f"tdb_{uuid.uuid4().hex[:8]}"
    client.run(f'CREATE DATABASE "{name}"')
    client.run(f'CREATE SCHEMA "{name}".RAW')
    client.run(f'CREATE TABLE "{name}".RAW.Q (ID NUMBER)')
    assert client.run("SELECT COUNT(*) FROM Q", database=name, schema="RAW")["data"] == [["0"]]
    assert error(client.submit("SELECT COUNT(*) FROM Q", database=name.upper(), schema="RAW"))[0] == "090105"


NO_WAREHOUSE = (
    "000606", "57P03",
    "No active warehouse selected in the current session.  Select an active warehouse with the 'use warehouse' "
    "command.",
)


def test_warehouse_is_case_sensitive(client, db):
    base = {"statement": "", "timeout": 60, "database": db["database"], "schema": db["schema"]}
    client.run("CREATE TABLE W (ID NUMBER)", **db)
    for wh in ("wh", "compute_wh", "Compute_Wh", "NO_SUCH_WH"):
        r = raw(client, {**base, "statement": "INSERT INTO W VALUES (1)", "warehouse": wh})
        assert error(r) == NO_WAREHOUSE, wh
        assert error(raw(client, {**base, "statement": "SELECT COUNT(*) FROM W", "warehouse": wh})) == NO_WAREHOUSE
        # no compute needed: DDL and constant queries run without a warehouse
        assert raw(client, {**base, "statement": "SELECT 1", "warehouse": wh}).status_code == 200
        r = raw(client, {**base, "statement": f"CREATE TABLE IF NOT EXISTS W_{wh} (ID NUMBER)", "warehouse": wh})
        assert r.status_code == 200, r.text
    for wh in ("WH", "COMPUTE_WH", "LOCAL_WH"):
        r = raw(client, {**base, "statement": "INSERT INTO W VALUES (1)", "warehouse": wh})
        assert r.status_code == 200, r.text
    # no warehouse in the request: the user's default warehouse (COMPUTE_WH)
    assert raw(client, {**base, "statement": "INSERT INTO W VALUES (1)"}).status_code == 200
    assert client.run("SELECT COUNT(*) FROM W", **db)["data"] == [["4"]]


def test_role_is_case_sensitive(client, db):
    base = {"statement": "SELECT 1", "timeout": 60, **db}
    for role in ("loader_role", "Loader_Role", "public", "SYSADMIN"):
        assert error(raw(client, {**base, "role": role})) == (
            "390189", "08004",
            f"Role '{role}' specified in the connect string does not exist or not authorized. Contact your local "
            "system administrator, or attempt to login with another role, e.g. PUBLIC.",
        )
    for role in ("LOADER_ROLE", "PUBLIC"):
        assert raw(client, {**base, "role": role}).status_code == 200
    assert raw(client, base).status_code == 200  # the user's default role


# ------------------------------------------------------------------------------------------------
# 2. COPY load metadata: (path, checksum) per table, 64 days, FORCE, LOAD_UNCERTAIN_FILES

ZERO_FILES = [["Copy executed with 0 files processed."]]


def _ndjson(*ids: int) -> bytes:
    return gzip.compress("".join(json.dumps({"id": i}) + "\n" for i in ids).encode())


def _copy(table: str, stage: str, files: list[str], extra: str = "") -> str:
    # the form the loader sends by default (functions/loader/src/copy.rs, LINEAGE=in_file)
    names = ", ".join(f"'{f}'" for f in files)
    return (f"COPY INTO {table} FROM @{stage}/ FILES = ({names}) FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') "
            f"ON_ERROR = ABORT_STATEMENT{extra}")


def _loaded(out: dict) -> list[tuple[str, str, str]]:
    names = [c["name"].lower() for c in out["resultSetMetaData"]["rowType"]]
    if names == ["status"]:
        assert out["data"] == ZERO_FILES
        return []
    f, st, n = names.index("file"), names.index("status"), names.index("rows_loaded")
    return sorted((r[f].rsplit("/", 1)[-1], r[st], r[n]) for r in out["data"])


@pytest.fixture()
def loads(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    d, s = db["database"], db["schema"]
    table = f'"{d}"."{s}"."EVENTS_RAW"'
    client.run(f"CREATE TABLE {table} (RECORD VARIANT)", **db)

    def copy(files: list[str], extra: str = "") -> list[tuple[str, str, str]]:
        return _loaded(client.run(_copy(table, "RAW_STAGE", files, extra), **db))

    def count() -> int:
        return int(client.run(f"SELECT COUNT(*) FROM {table}", **db)["data"][0][0])

    def put(key: str, body: bytes) -> None:
        s3.put_object(Bucket=name, Key=f"raw/{key}", Body=body)

    return copy, count, put, table


def test_copy_skips_loaded_files_by_path_and_checksum(client, db, loads):
    copy, count, put, table = loads
    put("e/a.ndjson.gz", _ndjson(1, 2, 3))
    put("e/b.ndjson.gz", _ndjson(4))
    assert copy(["e/a.ndjson.gz", "e/b.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "3"), ("b.ndjson.gz", "LOADED", "1")]
    assert count() == 4
    # the same files again: nothing loaded, and Snowflake's result is the single `status` row
    out = client.run(_copy(table, "RAW_STAGE", ["e/a.ndjson.gz", "e/b.ndjson.gz"]), **db)
    assert [c["name"] for c in out["resultSetMetaData"]["rowType"]] == ["status"]
    assert out["data"] == ZERO_FILES and "stats" not in out
    assert count() == 4
    # a new file next to a loaded one: the loaded one is left out of the result
    put("e/c.ndjson.gz", _ndjson(5, 6))
    assert copy(["e/a.ndjson.gz", "e/c.ndjson.gz"]) == [("c.ndjson.gz", "LOADED", "2")]
    # the same path with new content (new ETag) loads again
    put("e/a.ndjson.gz", _ndjson(7, 8))
    assert copy(["e/a.ndjson.gz", "e/b.ndjson.gz", "e/c.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "2")]
    assert count() == 8
    # FORCE = FALSE is the default; FORCE = TRUE loads regardless of the metadata
    assert copy(["e/a.ndjson.gz", "e/b.ndjson.gz"], " FORCE = FALSE") == []
    assert copy(["e/a.ndjson.gz", "e/b.ndjson.gz"], " FORCE = TRUE") == [
        ("a.ndjson.gz", "LOADED", "2"), ("b.ndjson.gz", "LOADED", "1")]
    assert count() == 11
    got = client.run(f"SELECT RECORD FROM {table}", **db)["data"]
    assert sorted(json.loads(r[0])["id"] for r in got) == [1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 8]
    # without FILES (every file under the prefix) the same metadata applies
    prefix_copy = f"COPY INTO {table} FROM @RAW_STAGE/e/ FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT')"
    assert _loaded(client.run(prefix_copy, **db)) == []
    put("e/d.ndjson.gz", _ndjson(10))
    assert _loaded(client.run(prefix_copy, **db)) == [("d.ndjson.gz", "LOADED", "1")]
    assert count() == 12


def test_load_metadata_belongs_to_the_table(client, db, loads):
    copy, count, put, table = loads
    put("t/a.ndjson.gz", _ndjson(1, 2))
    assert copy(["t/a.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "2")]
    assert copy(["t/a.ndjson.gz"]) == []
    # ALTER TABLE keeps it (same table) ...
    client.run(f"ALTER TABLE {table} ADD COLUMN EXTRA TEXT", **db)
    client.run(f"ALTER TABLE {table} DROP COLUMN EXTRA", **db)
    assert copy(["t/a.ndjson.gz"]) == []
    # ... DELETE too: deleting rows does not forget which files were loaded
    client.run(f"DELETE FROM {table}", **db)
    assert copy(["t/a.ndjson.gz"]) == []
    assert count() == 0
    # TRUNCATE TABLE deletes the load metadata
    client.run(f"INSERT INTO {table} SELECT PARSE_JSON('{{}}')", **db)
    client.run(f"TRUNCATE TABLE {table}", **db)
    assert copy(["t/a.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "2")]
    # a table created again has none
    client.run(f"CREATE OR REPLACE TABLE {table} (RECORD VARIANT)", **db)
    assert copy(["t/a.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "2")]
    client.run(f"DROP TABLE {table}", **db)
    client.run(f"CREATE TABLE {table} (RECORD VARIANT)", **db)
    assert copy(["t/a.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "2")]
    assert count() == 2


def test_failed_copy_records_nothing(client, db, loads):
    copy, count, put, table = loads
    put("f/good.ndjson.gz", _ndjson(1))
    put("f/bad.ndjson.gz", _ndjson(2)[:12] + b"garbage" * 5)
    r = client.submit(_copy(table, "RAW_STAGE", ["f/good.ndjson.gz", "f/bad.ndjson.gz"]), **db)
    assert r.status_code == 422, r.text
    assert count() == 0
    # the aborted statement left no load record: good.ndjson.gz loads with the next COPY
    assert copy(["f/good.ndjson.gz"]) == [("good.ndjson.gz", "LOADED", "1")]


def test_load_metadata_expires_after_64_days(client, stack, db, loads):
    copy, count, put, table = loads
    admin = f"{stack[0]}/admin/config"
    put("u/a.ndjson.gz", _ndjson(1))
    assert copy(["u/a.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "1")]  # the table's initial load
    put("u/b.ndjson.gz", _ndjson(2, 3))
    # 63 days on: a's load record is still valid, b is new (LAST_MODIFIED within 64 days)
    requests.post(admin, json={"clock_offset_days": 63}, timeout=5)
    assert copy(["u/a.ndjson.gz"]) == []
    assert requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["clock_offset_days"] == 63
    # 70 days on: a's record has expired, both files were last modified more than 64 days ago and the table's
    # initial load is older than 64 days too: load status uncertain, both skipped
    requests.post(admin, json={"clock_offset_days": 70}, timeout=5)
    assert copy(["u/a.ndjson.gz", "u/b.ndjson.gz"]) == []
    assert copy(["u/a.ndjson.gz", "u/b.ndjson.gz"], " LOAD_UNCERTAIN_FILES = FALSE") == []
    assert count() == 1
    # LOAD_UNCERTAIN_FILES = TRUE loads them: b for the first time, a again (its metadata had expired)
    assert copy(["u/a.ndjson.gz", "u/b.ndjson.gz"], " LOAD_UNCERTAIN_FILES = TRUE") == [
        ("a.ndjson.gz", "LOADED", "1"), ("b.ndjson.gz", "LOADED", "2")]
    # ... and records them: within 64 days of that load they are skipped even with LOAD_UNCERTAIN_FILES
    assert copy(["u/a.ndjson.gz", "u/b.ndjson.gz"], " LOAD_UNCERTAIN_FILES = TRUE") == []
    assert count() == 4
    # an old file never loaded, uncertain: FORCE = TRUE loads it as well
    put("u/c.ndjson.gz", _ndjson(9))
    requests.post(admin, json={"clock_offset_days": 140}, timeout=5)
    assert copy(["u/c.ndjson.gz"]) == []
    assert copy(["u/c.ndjson.gz"], " FORCE = TRUE") == [("c.ndjson.gz", "LOADED", "1")]
    # a new table (no initial load yet) knows an old file's status: not loaded, so it loads
    client.run("CREATE TABLE FRESH (RECORD VARIANT)", **db)
    assert _loaded(client.run(_copy("FRESH", "RAW_STAGE", ["u/a.ndjson.gz"]), **db)) == [
        ("a.ndjson.gz", "LOADED", "1")]
    # /admin/reset puts the clock back; the metadata stays (it belongs to the tables)
    requests.post(f"{stack[0]}/admin/reset", timeout=5)
    assert requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["clock_offset_days"] == 0
    assert copy(["u/a.ndjson.gz", "u/b.ndjson.gz"]) == []


def test_copy_leaves_out_a_named_file_that_is_not_in_the_stage(client, db, loads):
    # Snowflake: COPY works on what its listing of the stage finds; a named file that is not there is left out
    # of the result, not an error (local/load_history.py, module docstring).
    copy, count, put, table = loads
    put("m/here.ndjson.gz", _ndjson(1, 2))
    assert copy(["m/here.ndjson.gz", "m/gone.ndjson.gz"]) == [("here.ndjson.gz", "LOADED", "2")]
    # only missing files: the one-row "0 files processed" result
    out = client.run(_copy(table, "RAW_STAGE", ["m/gone.ndjson.gz", "m/never.ndjson.gz"]), **db)
    assert out["data"] == ZERO_FILES
    assert count() == 2


def _history(client: Client, db: dict) -> list[str]:
    out = client.run(f'SELECT FILE_NAME FROM "{db["database"]}".INFORMATION_SCHEMA.LOAD_HISTORY '
                     "WHERE TABLE_NAME = 'EVENTS_RAW'", **db)
    return sorted(r[0].rsplit("/", 1)[-1] for r in out["data"])


def test_load_history_view_shows_the_last_14_days(client, stack, db, loads):
    copy, count, put, table = loads
    admin = f"{stack[0]}/admin/config"
    put("h/a.ndjson.gz", _ndjson(1))
    assert copy(["h/a.ndjson.gz"]) == [("a.ndjson.gz", "LOADED", "1")]
    assert _history(client, db) == ["a.ndjson.gz"]
    try:
        requests.post(admin, json={"clock_offset_days": 13.9}, timeout=5)
        assert _history(client, db) == ["a.ndjson.gz"]
        # 15 days on: gone from the view, while the load metadata (64 days) still skips the file
        requests.post(admin, json={"clock_offset_days": 15}, timeout=5)
        assert _history(client, db) == []
        assert copy(["h/a.ndjson.gz"]) == []
        # a load now is stamped with the service's clock, so the view shows it
        put("h/b.ndjson.gz", _ndjson(2))
        assert copy(["h/b.ndjson.gz"]) == [("b.ndjson.gz", "LOADED", "1")]
        assert _history(client, db) == ["b.ndjson.gz"]
        # an alias of the view reads through the same window
        out = client.run(f'SELECT h.FILE_NAME FROM "{db["database"]}".INFORMATION_SCHEMA.LOAD_HISTORY h', **db)
        assert [r[0].rsplit("/", 1)[-1] for r in out["data"]] == ["b.ndjson.gz"]
    finally:
        requests.post(admin, json={"clock_offset_days": 0}, timeout=5)
    assert _history(client, db) == ["a.ndjson.gz", "b.ndjson.gz"]
    assert count() == 2


# ------------------------------------------------------------------------------------------------
# 3. Per-table lock queue of UPDATE / DELETE / MERGE: 000625 past 20 waiters


def test_lock_targets():
    assert table_locks.lock_target("UPDATE t SET a = 1", "DB", "S") == ("DB.S.T", "T")
    assert table_locks.lock_target('DELETE FROM "x"."Y" WHERE 1 = 1', "DB", "S") == ("DB.x.Y", "Y")
    assert table_locks.lock_target(
        'MERGE INTO "D"."S"."T" USING (SELECT 1 AS ID) s ON T.ID = s.ID WHEN MATCHED THEN DELETE', None, None
    ) == ("D.S.T", "T")
    for sql in ("INSERT INTO t VALUES (1)", "COPY INTO t FROM @s/", "SELECT * FROM t", "TRUNCATE TABLE t"):
        assert table_locks.lock_target(sql, "DB", "S") is None


LOCK_ERROR = re.compile(
    r"Statement '(?P<holder>[0-9a-f-]{36})' has locked table 'COUNTERS' in transaction (?P<txn>\d+) and this lock "
    r"has not yet been released\.\nYour statement '(?P<me>[0-9a-f-]{36})' was aborted because the number of "
    r"waiters for this lock exceeds the 20 statements limit\.",
)


def test_lock_queue_aborts_the_21st_waiter(client, stack, db):
    base = stack[0]
    client.run("CREATE TABLE COUNTERS (ID NUMBER, N NUMBER)", **db)
    client.run("INSERT INTO COUNTERS VALUES (1, 0)", **db)
    client.run("CREATE TABLE OTHER (ID NUMBER, N NUMBER)", **db)
    client.run("INSERT INTO OTHER VALUES (1, 0)", **db)
    aborts_before = requests.get(f"{base}/admin/stats", timeout=5).json()["table_locks"]["aborts"]
    requests.post(f"{base}/admin/faults", json={"hold_table_lock_ms": 4000, "count": 1}, timeout=5)
    update = "UPDATE COUNTERS SET N = N + 1 WHERE ID = 1"
    holder = client.submit(update, async_=True, **db).json()["statementHandle"]
    deadline = time.time() + 10
    while not requests.get(f"{base}/admin/stats", timeout=5).json()["table_locks"]["held"]:
        assert time.time() < deadline
        time.sleep(0.02)
    t0 = time.monotonic()
    # while COUNTERS is locked: other tables, and INSERT into COUNTERS itself, are not held up
    assert client.run("UPDATE OTHER SET N = N + 1", **db)["stats"]["numRowsUpdated"] == 1
    assert client.run("INSERT INTO COUNTERS VALUES (2, 0)", **db)["stats"]["numRowsInserted"] == 1
    assert time.monotonic() - t0 < 2
    merge = ("MERGE INTO COUNTERS USING (SELECT 1 AS ID) S ON COUNTERS.ID = S.ID "
             "WHEN MATCHED THEN UPDATE SET N = COUNTERS.N + 1")
    waiters = []
    for i in range(21):
        sql = update if i % 3 else merge
        waiters.append(client.submit(sql, async_=True, **db).json()["statementHandle"])
        time.sleep(0.05)
    # the 21st waiter fails at once, while the holder still holds the lock
    r = outcome(client, waiters[-1], within=2)
    code, sqlstate, message = error(r)
    assert (code, sqlstate) == ("000625", "57014")
    m = LOCK_ERROR.fullmatch(message)
    assert m, message
    assert m["holder"] == holder and m["me"] == waiters[-1]
    assert time.monotonic() - t0 < 4
    stats = requests.get(f"{base}/admin/stats", timeout=5).json()["table_locks"]
    assert list(stats["waiting"].values()) == [20]
    # the holder and the 20 waiters all succeed, one at a time
    for h in [holder, *waiters[:-1]]:
        r = outcome(client, h)
        assert r.status_code == 200, r.text
        assert r.json()["stats"]["numRowsUpdated"] == 1
    assert client.run("SELECT N FROM COUNTERS WHERE ID = 1", **db)["data"] == [["21"]]
    assert requests.get(f"{base}/admin/stats", timeout=5).json()["table_locks"] == {
        "held": {}, "waiting": {}, "aborts": aborts_before + 1}
    # without the fault a few concurrent updates just take turns
    handles = [client.submit(update, async_=True, **db).json()["statementHandle"] for _ in range(5)]
    assert all(outcome(client, h).status_code == 200 for h in handles)
    assert client.run("SELECT N FROM COUNTERS WHERE ID = 1", **db)["data"] == [["26"]]
