"""The local Snowpipe REST API (local/snowpipe_api.py) over HTTP: pipes in SQL, insertFiles queued then loaded
later through the SQL API's COPY, the pipe's own 14-day load metadata, insertReport retention and beginMark,
loadHistoryScan, limits, key-pair JWT only, 429 and lost answers.

Before snowpipe_api.py the service skipped CREATE PIPE and answered 404 on /v1/data/pipes/: every test here fails.
Run: .venv/bin/python -m pytest local/tests/test_snowpipe_api.py -q
"""

from __future__ import annotations

import gzip
import json
import sys
import time
import uuid
from pathlib import Path
import pytest
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_snowflake_service import (  # noqa: E402,F401 - fixtures are used by name
    _reset,
    _setup_stage,
    bucket,
    client,
    db,
    make_jwt,
    spec,
    stack,
)
from test_streaming_api import admin, wait_for  # noqa: E402

FORMAT = "FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT')"


class Pipe:
    """A Snowpipe REST client as the ingest SDKs send it ([PY]: `BEARER <jwt>`, no token-type header)."""

    def __init__(self, base: str, fqn: str):
        self.base, self.fqn = base, fqn

    def url(self, endpoint: str) -> str:
        return f"{self.base}/v1/data/pipes/{self.fqn}/{endpoint}"

    @staticmethod
    def headers(token: str | None = None, **extra) -> dict:
        return {"Authorization": f"BEARER {token or make_jwt()}", "Accept": "application/json", **extra}

    def insert(self, paths: list[str], headers: dict | None = None, **params) -> requests.Response:
        body = {"files": [{"path": p, "size": 10} for p in paths]}
        return requests.post(self.url("insertFiles"), params={"requestId": str(uuid.uuid4()), **params}, json=body,
                             headers=self.headers() if headers is None else headers, timeout=30)

    def report(self, **params) -> dict:
        r = requests.get(self.url("insertReport"), params={"requestId": str(uuid.uuid4()), **params},
                         headers=self.headers(), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def scan(self, **params) -> requests.Response:
        return requests.get(self.url("loadHistoryScan"), params={"requestId": str(uuid.uuid4()), **params},
                            headers=self.headers(), timeout=10)

    def wait_status(self, path: str, timeout: float = 10.0) -> dict:
        return wait_for(lambda: next((f for f in self.report()["files"] if f["path"] == path), None), timeout,
                        f"{path} never reported")


def put(s3, bucket_name: str, key: str, rows: list[dict]) -> None:
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    s3.put_object(Bucket=bucket_name, Key=f"raw/{key}", Body=gzip.compress(body))


@pytest.fixture()
def pipe(client, db, bucket, stack):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE EVENTS (RECORD VARIANT)", **db)
    client.run(f"CREATE PIPE EVENTS_PIPE AS COPY INTO EVENTS FROM @RAW_STAGE/in/ {FORMAT}", **db)
    admin(stack[0], "config", {"snowpipe_load_delay_ms": [300, 400]})
    return Pipe(stack[0], f"{db['database']}.{db['schema']}.EVENTS_PIPE"), s3, name


def count(client, db, table: str = "EVENTS") -> int:
    return int(client.run(f"SELECT COUNT(*) FROM {table}", **db)["data"][0][0])


# -- SQL ---------------------------------------------------------------------------------------------------


def test_pipes_in_sql_create_show_desc_drop(client, db, bucket):
    _setup_stage(client, db, bucket[1])
    client.run("CREATE TABLE EVENTS (RECORD VARIANT)", **db)
    out = client.run(f"CREATE PIPE IF NOT EXISTS p1 AUTO_INGEST = FALSE COMMENT = 'it''s AS COPY' AS "
                     f"COPY INTO EVENTS FROM @RAW_STAGE/in/ {FORMAT}", **db)
    assert out["data"] == [["Pipe P1 successfully created."]]
    client.run(f'CREATE PIPE "lower" AS COPY INTO EVENTS FROM @RAW_STAGE/ {FORMAT} ON_ERROR = CONTINUE', **db)
    show = client.run("SHOW PIPES", **db)
    names = [c["name"] for c in show["resultSetMetaData"]["rowType"]]
    rows = [dict(zip(names, r)) for r in show["data"]]
    assert [(r["name"], r["database_name"], r["schema_name"]) for r in rows] == [
        ("P1", db["database"], db["schema"]), ("lower", db["database"], db["schema"])]
    assert rows[0]["definition"].startswith("COPY INTO EVENTS FROM @RAW_STAGE/in/") and rows[0]["comment"] == "it's AS COPY"
    assert client.run("SHOW PIPES LIKE 'p%'", **db)["data"][0][1] == "P1"
    assert client.run("DESC PIPE P1", **db)["data"][0][1] == "P1"
    r = client.submit(f"CREATE PIPE P1 AS COPY INTO EVENTS FROM @RAW_STAGE/ {FORMAT}", **db)
    assert r.status_code == 422 and r.json()["code"] == "002002"
    client.run("DROP PIPE P1", **db)
    client.run("DROP PIPE IF EXISTS P1", **db)
    assert client.submit("DROP PIPE P1", **db).status_code == 422
    assert [r[1] for r in client.run("SHOW PIPES", **db)["data"]] == ["lower"]


@pytest.mark.parametrize("copy_options", ["FILES = ('a.gz')", "PURGE = TRUE", "FORCE = TRUE", "VALIDATION_MODE = RETURN_ERRORS",
                                          "ON_ERROR = ABORT_STATEMENT", "SIZE_LIMIT = 10", "RETURN_FAILED_ONLY = TRUE"])
def test_a_pipe_refuses_the_copy_options_snowflake_refuses(client, db, bucket, copy_options):
    _setup_stage(client, db, bucket[1])
    client.run("CREATE TABLE EVENTS (RECORD VARIANT)", **db)
    r = client.submit(f"CREATE PIPE P AS COPY INTO EVENTS FROM @RAW_STAGE/ {FORMAT} {copy_options}", **db)
    assert r.status_code == 422, r.text
    assert copy_options.split()[0] in r.json()["message"]


def test_a_pipe_needs_its_table_and_manual_ingest(client, db, bucket):
    _setup_stage(client, db, bucket[1])
    r = client.submit(f"CREATE PIPE P AS COPY INTO NOPE FROM @RAW_STAGE/ {FORMAT}", **db)
    assert r.status_code == 422 and r.json()["code"] == "002003"
    client.run("CREATE TABLE EVENTS (RECORD VARIANT)", **db)
    r = client.submit(f"CREATE PIPE P AUTO_INGEST = TRUE AS COPY INTO EVENTS FROM @RAW_STAGE/ {FORMAT}", **db)
    assert r.status_code == 422 and "AUTO_INGEST" in r.json()["message"]


# -- insertFiles, loads, metadata -----------------------------------------------------------------------------


def test_files_are_queued_then_loaded_later_once_per_pipe(client, db, pipe, stack):
    p, s3, name = pipe
    put(s3, name, "in/a.ndjson.gz", [{"id": 1}, {"id": 2}])
    r = p.insert(["a.ndjson.gz"])
    assert r.status_code == 200 and r.json()["responseCode"] == "SUCCESS"
    assert r.json()["requestId"] == r.request.url.split("requestId=")[1].split("&")[0]
    report = p.report()  # queued, not loaded: no event yet, one active file, no rows
    assert report["files"] == [] and report["statistics"]["activeFilesCount"] == 1
    assert count(client, db) == 0
    entry = p.wait_status("a.ndjson.gz")
    assert (entry["status"], entry["rowsInserted"], entry["rowsParsed"], entry["complete"]) == ("LOADED", 2, 2, True)
    assert entry["stageLocation"] == f"s3://{name}/raw/in/" and entry["fileSize"] == 10
    assert count(client, db) == 2
    # the same path again (even changed) is skipped: the pipe's load metadata is by path ([INTRO])
    put(s3, name, "in/a.ndjson.gz", [{"id": 3}])
    r = p.insert(["a.ndjson.gz"], showSkippedFiles="true")
    assert r.status_code == 200 and r.json()["skippedFiles"] == ["a.ndjson.gz"]
    time.sleep(0.8)
    assert count(client, db) == 2
    stats = requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["snowpipe"]
    assert (stats["files_queued"], stats["files_loaded"], stats["duplicates_skipped"]) == (1, 1, 1)
    # not the table's metadata: a bulk COPY of the same file loads it again ([INTRO]), and LOAD_HISTORY never
    # showed the pipe's load ([LOADHIST])
    hist = client.run("SELECT COUNT(*) FROM INFORMATION_SCHEMA.LOAD_HISTORY", **db)["data"][0][0]
    assert hist == "0"
    client.run(f"COPY INTO EVENTS FROM @RAW_STAGE/in/ FILES = ('a.ndjson.gz') {FORMAT}", **db)
    assert count(client, db) == 3


def test_a_file_queued_twice_loads_once(client, db, pipe, stack):
    p, s3, name = pipe
    admin(stack[0], "config", {"snowpipe_load_delay_ms": [600, 600]})
    put(s3, name, "in/b.ndjson.gz", [{"id": 1}])
    assert p.insert(["b.ndjson.gz"]).status_code == 200
    assert p.insert(["b.ndjson.gz", "b.ndjson.gz"]).status_code == 200
    p.wait_status("b.ndjson.gz")
    time.sleep(0.3)
    assert count(client, db) == 1


def test_load_metadata_lasts_14_days_of_the_test_clock(client, db, pipe, stack):
    p, s3, name = pipe
    put(s3, name, "in/c.ndjson.gz", [{"id": 1}])
    p.insert(["c.ndjson.gz"])
    p.wait_status("c.ndjson.gz")
    admin(stack[0], "config", {"clock_offset_days": 13.9})
    assert p.insert(["c.ndjson.gz"], showSkippedFiles="true").json()["skippedFiles"] == ["c.ndjson.gz"]
    admin(stack[0], "config", {"clock_offset_days": 14.1})
    assert p.insert(["c.ndjson.gz"], showSkippedFiles="true").json()["skippedFiles"] == []
    wait_for(lambda: count(client, db) == 2, 10, "the file never loaded again after 14 days")


def test_a_bad_file_fails_whole_with_its_first_error_and_may_come_again(client, db, pipe):
    p, s3, name = pipe
    s3.put_object(Bucket=name, Key="raw/in/bad.ndjson.gz", Body=gzip.compress(b'{"id": 1}\n{"id": \n'))
    p.insert(["bad.ndjson.gz"])
    entry = p.wait_status("bad.ndjson.gz")
    assert (entry["status"], entry["rowsInserted"], entry["errorsSeen"], entry["errorLimit"]) == ("LOAD_FAILED", 0, 1, 1)
    assert entry["firstError"] and entry["complete"] is True
    assert count(client, db) == 0
    # a failed file records no load metadata: fixed and submitted again, it loads
    put(s3, name, "in/bad.ndjson.gz", [{"id": 1}])
    assert p.insert(["bad.ndjson.gz"], showSkippedFiles="true").json()["skippedFiles"] == []
    wait_for(lambda: count(client, db) == 1, 10, "the fixed file never loaded")


def test_a_missing_file_and_an_injected_failure_are_load_failed(client, db, pipe, stack):
    p, s3, name = pipe
    p.insert(["never-written.ndjson.gz"])
    assert p.wait_status("never-written.ndjson.gz")["systemError"]
    put(s3, name, "in/doomed.ndjson.gz", [{"id": 1}])
    admin(stack[0], "faults", {"snowpipe_fail_load": "doomed"})
    p.insert(["doomed.ndjson.gz"])
    assert p.wait_status("doomed.ndjson.gz")["status"] == "LOAD_FAILED"
    assert count(client, db) == 0


def test_lineage_through_include_metadata_and_match_by_column_name(client, db, bucket, stack):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE T (ID NUMBER, SOURCE_FILE TEXT, SOURCE_ROW NUMBER)", **db)
    client.run(f"CREATE PIPE P AS COPY INTO T FROM @RAW_STAGE/in/ {FORMAT} MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE "
               "INCLUDE_METADATA = (SOURCE_FILE = METADATA$FILENAME, SOURCE_ROW = METADATA$FILE_ROW_NUMBER)", **db)
    admin(stack[0], "config", {"snowpipe_load_delay_ms": [50, 100]})
    put(s3, name, "in/d/x.ndjson.gz", [{"id": 7}, {"id": 8}])
    p = Pipe(stack[0], f"{db['database']}.{db['schema']}.P")
    p.insert(["d/x.ndjson.gz"])
    assert p.wait_status("d/x.ndjson.gz")["status"] == "LOADED"
    assert client.run("SELECT ID, SOURCE_FILE, SOURCE_ROW FROM T ORDER BY ID", **db)["data"] == [
        ["7", "d/x.ndjson.gz", "1"], ["8", "d/x.ndjson.gz", "2"]]  # as the SQL API COPY names it


def test_request_limits_and_malformed_bodies(pipe, stack, db):
    p, _, _ = pipe
    admin(stack[0], "config", {"snowpipe_load_delay_ms": [600000, 600000], "snowpipe_requests_per_second": 1000})
    r = p.insert([f"f{i}.gz" for i in range(5001)])
    assert r.status_code == 400 and "5000" in r.json()["message"]
    assert p.insert(["x" * 1025]).status_code == 400
    assert p.insert(["é" * 512]).status_code == 200  # 1,024 bytes in UTF-8: the limit itself
    assert p.insert([f"f{i}.gz" for i in range(5000)]).status_code == 200
    for body, ctype in ((b"{", "application/json"), (b'{"files": [{"size": 1}]}', "application/json"),
                        (b'{"files": []}', "application/json"), (b"a.gz", "application/xml")):
        r = requests.post(p.url("insertFiles"), data=body, headers=p.headers(**{"Content-Type": ctype}), timeout=5)
        assert r.status_code == 400, (body, r.text)
    r = requests.post(p.url("insertFiles"), data=b"t1.gz\nt2.gz\n", headers=p.headers(**{"Content-Type": "text/plain"}),
                      timeout=5)
    assert r.status_code == 200
    stats = requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["snowpipe"]
    assert stats["files_queued"] == 1 + 5000 + 2  # nothing of a refused request was queued
    # unknown pipe: 404; case-sensitive names ([REST])
    assert Pipe(stack[0], f"{db['database']}.{db['schema']}.NOPE").insert(["a"]).status_code == 404
    assert Pipe(stack[0], f"{db['database']}.{db['schema']}.events_pipe").insert(["a"]).status_code == 404
    assert Pipe(stack[0], "EVENTS_PIPE").insert(["a"]).status_code == 404


def test_only_a_valid_key_pair_jwt_is_accepted(pipe):
    p, _, _ = pipe
    assert p.insert(["a"], headers=p.headers(**{"X-Snowflake-Authorization-Token-Type": "KEYPAIR_JWT"})).status_code == 200
    for headers in ({"Authorization": "Bearer local-dev-token", "X-Snowflake-Authorization-Token-Type": "OAUTH"},
                    {"Authorization": "Bearer local-dev-token",
                     "X-Snowflake-Authorization-Token-Type": "PROGRAMMATIC_ACCESS_TOKEN"},
                    p.headers(make_jwt(lifetime=7200)), p.headers(make_jwt(iat_offset=-4000)),
                    p.headers(make_jwt(fingerprint="SHA256:AAAA")), {}):
        r = p.insert(["a"], headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["success"] is False


def test_rate_limit_and_injected_faults(pipe, stack):
    p, _, _ = pipe
    admin(stack[0], "config", {"snowpipe_requests_per_second": 3, "snowpipe_load_delay_ms": [600000, 600000]})
    codes = [p.insert([f"r{i}.gz"]).status_code for i in range(5)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
    admin(stack[0], "config", {"snowpipe_requests_per_second": 1000})
    admin(stack[0], "faults", {"snowpipe_status": 503, "count": 1})
    assert p.insert(["s.gz"]).status_code == 503
    assert p.insert(["s.gz"], showSkippedFiles="true").json()["skippedFiles"] == []  # the 503 queued nothing


def test_a_lost_answer_after_apply_queued_the_files(pipe, stack, client, db):
    p, s3, name = pipe
    put(s3, name, "in/lost.ndjson.gz", [{"id": 1}])
    admin(stack[0], "faults", {"snowpipe_drop_connection": True, "count": 1, "after_apply": True})
    with pytest.raises(requests.ConnectionError):
        p.insert(["lost.ndjson.gz"])
    # the client resends: the file is already queued (or loaded), so it is skipped, and it loads once
    assert p.insert(["lost.ndjson.gz"], showSkippedFiles="true").json()["skippedFiles"] == ["lost.ndjson.gz"]
    p.wait_status("lost.ndjson.gz")
    assert count(client, db) == 1
    admin(stack[0], "faults", {"snowpipe_drop_connection": True, "count": 1})
    with pytest.raises(requests.ConnectionError):
        p.insert(["never.ndjson.gz"])
    assert p.insert(["never.ndjson.gz"], showSkippedFiles="true").json()["skippedFiles"] == []


# -- insertReport and loadHistoryScan --------------------------------------------------------------------------


def test_insert_report_begin_mark_and_retention(pipe, stack):
    p, s3, name = pipe
    admin(stack[0], "config", {"snowpipe_load_delay_ms": [0, 0], "snowpipe_report_max_events": 3})
    for i in range(2):
        put(s3, name, f"in/e{i}.ndjson.gz", [{"id": i}])
        p.insert([f"e{i}.ndjson.gz"])
        p.wait_status(f"e{i}.ndjson.gz")
    first = p.report()
    assert [f["path"] for f in first["files"]] == ["e0.ndjson.gz", "e1.ndjson.gz"] and first["completeResult"] is True
    assert first["pipe"] == p.fqn
    mark = first["nextBeginMark"]
    assert p.report(beginMark=mark)["files"] == []
    for i in range(2, 6):
        put(s3, name, f"in/e{i}.ndjson.gz", [{"id": i}])
        p.insert([f"e{i}.ndjson.gz"])
        p.wait_status(f"e{i}.ndjson.gz")
    later = p.report(beginMark=mark)  # e2 was dropped (only the latest 3 kept): an event was missed
    assert [f["path"] for f in later["files"]] == ["e3.ndjson.gz", "e4.ndjson.gz", "e5.ndjson.gz"]
    assert later["completeResult"] is False
    assert p.report(beginMark=later["nextBeginMark"])["completeResult"] is True
    r = requests.get(p.url("insertReport"), params={"beginMark": "garbage"}, headers=p.headers(), timeout=5)
    assert r.status_code == 400
    admin(stack[0], "config", {"clock_offset_days": 11 / 1440})  # 11 minutes later: events are kept 10
    assert p.report()["files"] == []


def test_load_history_scan_window_and_limits(pipe, stack):
    p, s3, name = pipe
    admin(stack[0], "config", {"snowpipe_load_delay_ms": [0, 0]})
    start = time.time() - 1
    put(s3, name, "in/h.ndjson.gz", [{"id": 1}])
    p.insert(["h.ndjson.gz"])
    p.wait_status("h.ndjson.gz")
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000Z"  # noqa: E731
    r = p.scan(startTimeInclusive=iso(start))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [f["path"] for f in body["files"]] == ["h.ndjson.gz"] and body["completeResult"] is True
    assert body["rangeStartTime"] == body["rangeEndTime"] == body["files"][0]["lastInsertTime"]
    assert p.scan(startTimeInclusive=iso(start), endTimeExclusive=iso(start + 0.5)).json()["files"] == []
    assert p.scan().status_code == 400  # startTimeInclusive is required ([JAVA])
    assert p.scan(startTimeInclusive="yesterday").status_code == 400
    codes = [p.scan(startTimeInclusive=iso(start)).status_code for _ in range(5)]
    assert codes[-1] == 429  # a record read a handful of times ([REST])
    admin(stack[0], "config", {"clock_offset_days": 15})
    assert p.scan(startTimeInclusive=iso(start)).json()["files"] == []  # 14 days kept


def test_recreating_a_pipe_drops_its_load_metadata(client, db, pipe):
    p, s3, name = pipe
    put(s3, name, "in/r.ndjson.gz", [{"id": 1}])
    p.insert(["r.ndjson.gz"])
    p.wait_status("r.ndjson.gz")
    client.run(f"CREATE OR REPLACE PIPE EVENTS_PIPE AS COPY INTO EVENTS FROM @RAW_STAGE/in/ {FORMAT}", **db)
    assert p.report()["files"] == []
    assert p.insert(["r.ndjson.gz"], showSkippedFiles="true").json()["skippedFiles"] == []
