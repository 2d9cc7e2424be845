"""Tests of the local Snowflake SQL API service (local/snowflake_service.py) and moto S3 loading.

Uses the running stack when LOCAL_SF_URL (and MOTO_URL) are set (as `make test` does); otherwise
starts its own stack on free ports and stops it afterwards.
Run: .venv/bin/python -m pytest local/tests -q
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import boto3
import jsonschema
import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

HERE = Path(__file__).resolve().parent
LOCAL = HERE.parent
sys.path.insert(0, str(LOCAL))
from snowflake_service import Spec, find_spec  # noqa: E402

KEY_P8 = LOCAL / "keys/snowflake_test_key.p8"
ACCOUNT = os.environ.get("LOCAL_SF_ACCOUNT", "LOCALTEST")
USER = os.environ.get("LOCAL_SF_USER", "LOADER")
PAT = os.environ.get("LOCAL_SF_TOKEN", "local-dev-token")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stack():
    # Only a stack named by LOCAL_SF_URL is shared: one merely answering on the default ports may
    # belong to another checkout or session, and these tests reset its faults and counters.
    sf_url, moto_url = os.environ.get("LOCAL_SF_URL"), os.environ.get("MOTO_URL")
    if sf_url:
        yield sf_url.rstrip("/"), (moto_url or "http://127.0.0.1:4566").rstrip("/")
        return
    run_dir = tempfile.mkdtemp(prefix="local-stack-")
    env = {**os.environ, "MOTO_PORT": str(_free_port()), "LOCAL_SF_PORT": str(_free_port()), "RUN_DIR": run_dir}
    subprocess.run([str(LOCAL / "stack.sh"), "up"], env=env, check=True, stdin=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{env['LOCAL_SF_PORT']}", f"http://127.0.0.1:{env['MOTO_PORT']}"
    finally:
        subprocess.run([str(LOCAL / "stack.sh"), "down"], env=env, check=False, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def spec() -> Spec:
    return Spec(find_spec())


def make_jwt(*, lifetime: int = 3000, iat_offset: int = 0, fingerprint: str | None = None, key_path=KEY_P8) -> str:
    key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    fp = fingerprint or "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()
    now = int(time.time()) + iat_offset
    claims = {"iss": f"{ACCOUNT}.{USER}.{fp}", "sub": f"{ACCOUNT}.{USER}", "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, key, algorithm="RS256")


class Client:
    """A tiny SQL API client that checks every /api/v2 response against the spec independently."""

    def __init__(self, base: str, spec: Spec, token: str | None = None, token_type: str = "KEYPAIR_JWT"):
        self.base, self.spec = base, spec
        self.token = token or make_jwt()
        self.token_type = token_type
        self.http = requests.Session()

    def headers(self) -> dict:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Snowflake-Authorization-Token-Type": self.token_type,
            "User-Agent": "local-tests/1.0",
            "Accept": "application/json",
        }

    def _check(self, op: str, r: requests.Response) -> requests.Response:
        assert r.status_code != 500, r.text  # the service turns invalid responses into 500
        schema = self.spec.responses.get((op, r.status_code))
        if schema is not None:
            jsonschema.validate(r.json(), schema)
        return r

    def submit(self, statement: str, *, bindings=None, database=None, schema=None, request_id=None,
               retry=True, async_=False, timeout=60, **extra) -> requests.Response:
        body = {"statement": statement, "timeout": timeout, "warehouse": "WH", "role": "LOADER_ROLE",
                "parameters": {"query_tag": "tests"}, **extra}
        if database:
            body["database"] = database
        if schema:
            body["schema"] = schema
        if bindings is not None:
            body["bindings"] = bindings
        params = {"requestId": request_id or str(uuid.uuid4())}
        if retry:
            params["retry"] = "true"
        if async_:
            params["async"] = "true"
        r = self.http.post(f"{self.base}/api/v2/statements", params=params, json=body, headers=self.headers(),
                           timeout=30)
        return self._check("submit", r)

    def get(self, handle: str, partition: int | None = None) -> requests.Response:
        params = {} if partition is None else {"partition": partition}
        r = self.http.get(f"{self.base}/api/v2/statements/{handle}", params=params, headers=self.headers(),
                          timeout=30)
        return self._check("get", r)

    def cancel(self, handle: str) -> requests.Response:
        r = self.http.post(f"{self.base}/api/v2/statements/{handle}/cancel", headers=self.headers(), timeout=30)
        return self._check("cancel", r)

    def run(self, statement: str, **kw) -> dict:
        r = self.submit(statement, **kw)
        while r.status_code == 202:
            time.sleep(0.05)
            r = self.get(r.json()["statementHandle"])
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture(scope="session")
def client(stack, spec) -> Client:
    return Client(stack[0], spec)


@pytest.fixture(autouse=True)
def _reset(stack):
    requests.post(f"{stack[0]}/admin/reset", timeout=5)
    yield
    requests.post(f"{stack[0]}/admin/reset", timeout=5)


@pytest.fixture()
def db(client):
    """A fresh database/schema per test."""
    name = f"TDB_{uuid.uuid4().hex[:8].upper()}"
    client.run(f"CREATE DATABASE IF NOT EXISTS {name}")
    client.run(f"CREATE SCHEMA IF NOT EXISTS {name}.RAW")
    return {"database": name, "schema": "RAW"}


# ------------------------------------------------------------------------------------------------


def test_ddl_result_has_status_row(client, db):
    out = client.run("CREATE TABLE IF NOT EXISTS T1 (ID NUMBER, V VARIANT)", **db)
    assert out["code"] == "090001" and out["sqlState"] == "00000"
    assert out["resultSetMetaData"]["rowType"][0]["name"].lower() == "status"
    assert "T1" in out["data"][0][0]


def test_bindings_hostile_strings_round_trip(client, db):
    client.run("CREATE TABLE H (ID NUMBER, S TEXT, F FLOAT, B BOOLEAN, TS TIMESTAMP_NTZ, N NUMBER(10,2), D DATE)", **db)
    hostile = ["'; DROP TABLE H; --", 'quote " and \\ backslash', "?", ":1", "unicode ☃ \u0000x", "\n\t", "$$", ""]
    for i, s in enumerate(hostile):
        out = client.run(
            "INSERT INTO H (ID, S, F, B, TS, N, D) VALUES (?, ?, ?, ?, ?, ?, ?)",
            bindings={"1": {"type": "FIXED", "value": str(i)}, "2": {"type": "TEXT", "value": s},
                      "3": {"type": "REAL", "value": "1.5"}, "4": {"type": "BOOLEAN", "value": "true"},
                      "5": {"type": "TIMESTAMP_NTZ", "value": "1700000000123456000"},
                      "6": {"type": "FIXED", "value": "12.5"}, "7": {"type": "DATE", "value": "2024-01-02"}},
            **db,
        )
        assert out["stats"]["numRowsInserted"] == 1
    client.run("INSERT INTO H (ID, S) VALUES (?, ?)",
               bindings={"1": {"type": "FIXED", "value": "99"}, "2": {"type": "TEXT", "value": None}}, **db)
    out = client.run("SELECT ID, S, F, B, TS, N, D FROM H WHERE ID < 99 ORDER BY ID", **db)
    assert [r[1] for r in out["data"]] == hostile
    row = out["data"][0]
    assert row[2] == "1.5" and row[3] == "true" and row[4] == "1700000000.123456000" and row[5] == "12.50"
    assert row[6] == "19724"  # days since epoch for 2024-01-02
    types = [c["type"] for c in out["resultSetMetaData"]["rowType"]]
    assert types == ["FIXED", "TEXT", "REAL", "BOOLEAN", "TIMESTAMP_NTZ", "FIXED", "DATE"]
    out = client.run("SELECT S FROM H WHERE ID = ?", bindings={"1": {"type": "FIXED", "value": "99"}}, **db)
    assert out["data"] == [[None]]
    # the table survived the injection attempt
    assert client.run("SELECT COUNT(*) FROM H", **db)["data"] == [[str(len(hostile) + 1)]]


def test_variant_and_merge_stats(client, db):
    client.run("CREATE TABLE M (ID NUMBER, V VARIANT)", **db)
    client.run("INSERT INTO M SELECT 1, PARSE_JSON(?)", bindings={"1": {"type": "TEXT", "value": '{"a": [1, 2]}'}}, **db)
    out = client.run("SELECT V FROM M", **db)
    assert out["resultSetMetaData"]["rowType"][0]["type"] == "VARIANT"
    assert json.loads(out["data"][0][0]) == {"a": [1, 2]}
    out = client.run(
        "MERGE INTO M USING (SELECT 1 AS ID UNION ALL SELECT 2) S ON M.ID = S.ID "
        "WHEN MATCHED THEN UPDATE SET V = PARSE_JSON('{}') WHEN NOT MATCHED THEN INSERT (ID) VALUES (S.ID)",
        **db,
    )
    assert out["stats"]["numRowsInserted"] == 1 and out["stats"]["numRowsUpdated"] == 1
    out = client.run("DELETE FROM M WHERE ID = 2", **db)
    assert out["stats"]["numRowsDeleted"] == 1


def test_sql_error_is_422_with_code(client, db):
    r = client.submit("SELECT * FROM NO_SUCH_TABLE", **db)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "002003" and body["sqlState"] == "42S02" and body["statementHandle"]
    assert not body["message"].startswith("002003")
    r = client.submit("SELEC 1", **db)
    assert r.status_code == 422 and len(r.json()["code"]) == 6
    assert client.get(body["statementHandle"]).status_code == 422


def test_async_and_poll(client, stack, db):
    r = client.submit("SELECT 42", async_=True, **db)
    assert r.status_code == 202
    assert r.json()["code"] == "333334"
    handle = r.json()["statementHandle"]
    assert r.json()["statementStatusUrl"] == f"/api/v2/statements/{handle}"
    deadline = time.time() + 10
    while (r := client.get(handle)).status_code == 202 and time.time() < deadline:
        time.sleep(0.05)
    assert r.status_code == 200 and r.json()["data"] == [["42"]]


def test_slow_statement_returns_202_then_result(client, stack, db):
    requests.post(f"{stack[0]}/admin/faults", json={"delay_ms": 600, "count": 1}, timeout=5)
    requests.post(f"{stack[0]}/admin/faults", json={"async_after_ms": 100}, timeout=5)
    r = client.submit("SELECT 7", **db)
    assert r.status_code == 202
    handle = r.json()["statementHandle"]
    assert client.get(handle).status_code == 202
    time.sleep(0.8)
    assert client.get(handle).json()["data"] == [["7"]]
    assert client.get(str(uuid.uuid4())).status_code == 404


def test_cancel(client, stack, db):
    requests.post(f"{stack[0]}/admin/faults", json={"delay_ms": 2000, "count": 1}, timeout=5)
    r = client.submit("SELECT 1", async_=True, **db)
    handle = r.json()["statementHandle"]
    assert client.cancel(handle).status_code == 200
    deadline = time.time() + 5
    while (r := client.get(handle)).status_code == 202 and time.time() < deadline:
        time.sleep(0.05)
    assert r.status_code == 422 and r.json()["code"] == "000604"


def test_partitions(client, stack, db):
    requests.post(f"{stack[0]}/admin/config", json={"partition_rows": 10}, timeout=5)
    out = client.run("SELECT * FROM RANGE(25)", **db)
    info = out["resultSetMetaData"]["partitionInfo"]
    assert [p["rowCount"] for p in info] == [10, 10, 5]
    assert out["resultSetMetaData"]["numRows"] == 25 and len(out["data"]) == 10
    rows = list(out["data"])
    for n in (1, 2):
        r = client.get(out["statementHandle"], partition=n)
        assert r.status_code == 200 and set(r.json()) == {"data"}
        rows += r.json()["data"]
    assert [r[0] for r in rows] == [str(i) for i in range(25)]


def test_auth(stack, spec, tmp_path):
    base = stack[0]
    ok = Client(base, spec)
    assert ok.submit("SELECT 1").status_code == 200
    assert Client(base, spec, token=PAT, token_type="PROGRAMMATIC_ACCESS_TOKEN").submit("SELECT 1").status_code == 200
    assert Client(base, spec, token=PAT, token_type="OAUTH").submit("SELECT 1").status_code == 200
    # wrong key
    other = tmp_path / "other.p8"
    subprocess.run(f"openssl genrsa 2048 2>/dev/null | openssl pkcs8 -topk8 -nocrypt -out {other}", shell=True,
                   check=True)
    bad = [
        Client(base, spec, token=make_jwt(key_path=other)),
        Client(base, spec, token=make_jwt(fingerprint="SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
        Client(base, spec, token=make_jwt(iat_offset=-4000, lifetime=3600)),  # expired
        Client(base, spec, token=make_jwt(lifetime=7200)),  # lifetime too long
        Client(base, spec, token="wrong", token_type="PROGRAMMATIC_ACCESS_TOKEN"),
        Client(base, spec, token=make_jwt(), token_type="OAUTH"),
    ]
    for c in bad:
        r = c.submit("SELECT 1")
        assert r.status_code == 401, r.text
        assert r.json()["code"].startswith("390") and c.token not in r.text
    r = requests.post(f"{base}/api/v2/statements", json={"statement": "SELECT 1"},
                      headers={**ok.headers(), "User-Agent": ""}, timeout=5)
    assert r.status_code == 400


def test_request_validation(client, stack):
    h = client.headers()
    r = requests.post(f"{stack[0]}/api/v2/statements", json={"statement": "SELECT 1", "timeout": -1}, headers=h,
                      timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{stack[0]}/api/v2/statements", json={"statement": 5}, headers=h, timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{stack[0]}/api/v2/statements", data="x", headers={**h, "Content-Type": "text/plain"},
                      timeout=5)
    assert r.status_code == 415


def test_faults_and_counters(client, stack):
    base = stack[0]
    requests.post(f"{base}/admin/reset", timeout=5)
    requests.post(f"{base}/admin/faults", json={"status": 503, "count": 2}, timeout=5)
    assert client.submit("SELECT 1").status_code == 503
    assert client.submit("SELECT 1").status_code == 503
    assert client.submit("SELECT 1").status_code == 200
    requests.post(f"{base}/admin/faults", json={"status": 429, "count": 1}, timeout=5)
    assert client.submit("SELECT 1").status_code == 429
    requests.post(f"{base}/admin/faults", json={"drop_connection": True, "count": 1}, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.submit("SELECT 1")
    assert client.submit("SELECT 1").status_code == 200
    stats = requests.get(f"{base}/admin/stats", timeout=5).json()
    assert stats["submissions"] == 6 and stats["executions"] == 2
    assert stats["validate"] is True  # the service checks its own responses against the spec


def test_request_id_retry_executes_once(client, stack, db):
    client.run("CREATE TABLE R (ID NUMBER)", **db)
    rid = str(uuid.uuid4())
    first = client.run("INSERT INTO R VALUES (1)", request_id=rid, **db)
    again = client.run("INSERT INTO R VALUES (1)", request_id=rid, **db)
    assert again["statementHandle"] == first["statementHandle"]
    # while still running, the retry answers 202 with the same handle
    requests.post(f"{stack[0]}/admin/faults", json={"delay_ms": 500, "count": 1}, timeout=5)
    rid2 = str(uuid.uuid4())
    r1 = client.submit("INSERT INTO R VALUES (2)", request_id=rid2, async_=True, **db)
    r2 = client.submit("INSERT INTO R VALUES (2)", request_id=rid2, async_=True, **db)
    assert r1.status_code == r2.status_code == 202
    assert r1.json()["statementHandle"] == r2.json()["statementHandle"]
    client.run("INSERT INTO R VALUES (2)", request_id=rid2, **db)
    stats = requests.get(f"{stack[0]}/admin/stats", timeout=5).json()
    assert stats["by_request_id"][rid] == 1 and stats["by_request_id"][rid2] == 1
    assert client.run("SELECT COUNT(*) FROM R", **db)["data"] == [["2"]]
    # without retry=true the same requestId is a new submission (executed again)
    client.run("INSERT INTO R VALUES (3)", request_id=rid, retry=False, **db)
    assert requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["by_request_id"][rid] == 2


def test_stream_task_are_noops(client, db):
    """Pipes are kept, not skipped: local/tests/test_snowpipe_api.py."""
    client.run("CREATE TABLE S1 (ID NUMBER)", **db)
    for sql in ("CREATE STREAM IF NOT EXISTS S1_STREAM ON TABLE S1", "CREATE OR REPLACE TASK T1 AS SELECT 1",
                "ALTER TASK T1 RESUME"):
        assert client.run(sql, **db)["data"] == [["Statement executed successfully."]]


def test_dynamic_table_lags_its_base_table_until_refreshed(client, db):
    """Snowflake fills a Dynamic Table at creation and refreshes it later (TARGET_LAG >= 1 minute);
    a reader in between sees the older state; ALTER ... REFRESH refreshes at once."""
    client.run("CREATE TABLE BASE (ID NUMBER, V VARCHAR)", **db)
    client.run("INSERT INTO BASE VALUES (1, 'a')", **db)
    for lag in ("'59 seconds'", "'0 minutes'", "'soon'"):
        r = client.submit(f"CREATE DYNAMIC TABLE D1 TARGET_LAG = {lag} WAREHOUSE = WH AS SELECT * FROM BASE", **db)
        assert r.status_code == 422 and r.json()["code"] == "001003", r.text
    r = client.submit("CREATE DYNAMIC TABLE D1 TARGET_LAG = '1 minute' AS SELECT * FROM BASE", **db)
    assert r.status_code == 422 and "WAREHOUSE" in r.text, r.text
    client.run("CREATE OR REPLACE DYNAMIC TABLE D1 TARGET_LAG = '1 minute' WAREHOUSE = WH AS SELECT * FROM BASE", **db)
    client.run("INSERT INTO BASE VALUES (2, 'b')", **db)
    assert client.run("SELECT COUNT(*) FROM D1", **db)["data"] == [["1"]]  # created with one row, not current
    client.run("ALTER DYNAMIC TABLE D1 REFRESH", **db)
    assert client.run("SELECT COUNT(*) FROM D1", **db)["data"] == [["2"]]
    r = client.submit("ALTER DYNAMIC TABLE D1 SET TARGET_LAG = '30 seconds'", **db)
    assert r.status_code == 422, r.text
    r = client.submit("ALTER DYNAMIC TABLE NOPE REFRESH", **db)
    assert r.status_code == 422 and r.json()["code"] == "002003", r.text
    client.run("DROP DYNAMIC TABLE D1", **db)
    assert client.submit("SELECT * FROM D1", **db).status_code == 422


def test_dynamic_tables_come_due_after_their_lag():
    import dynamic_tables

    tables = dynamic_tables.DynamicTables()
    sql = tables.rewrite('CREATE DYNAMIC TABLE "Db".S.T TARGET_LAG = \'2 minutes\' WAREHOUSE = W AS SELECT 1', None, None)
    assert sql == 'CREATE OR REPLACE TABLE "Db".S.T AS SELECT 1'
    assert tables.due() == []
    table = tables.tables[("DB", "S", "T")]
    table.refreshed_at -= 119
    assert tables.due() == []
    table.refreshed_at -= 1
    assert tables.due() == [table]
    assert tables.rewrite("ALTER DYNAMIC TABLE t REFRESH", "db", "s").startswith("CREATE OR REPLACE TABLE")
    assert tables.due() == []
    tables.rewrite("CREATE DYNAMIC TABLE D TARGET_LAG = DOWNSTREAM WAREHOUSE = W AS SELECT 1", "DB", "S")
    tables.tables[("DB", "S", "D")].refreshed_at -= 10**6
    assert tables.due() == []  # DOWNSTREAM refreshes only when asked


def test_spec_checker_rejects_bad_bodies(spec):
    good = {"statementHandle": str(uuid.uuid4()), "resultSetMetaData": {"format": "jsonv2", "rowType": [{"name": "X"}]},
            "data": [["1", None]]}
    assert spec.check_response("submit", 200, good) is None
    assert spec.check_response("submit", 200, {**good, "resultSetMetaData": {"rowType": []}})  # minItems 1
    assert spec.check_response("get", 200, {**good, "data": [[1]]})  # cells are strings or null
    assert spec.check_response("get", 422, {"statementHandle": "x"})  # message is required


def test_multi_statement_rejected(client, db):
    r = client.submit("SELECT 1; SELECT 2", **db)
    assert r.status_code == 422 and r.json()["code"] == "000008"


# ------------------------------------------------------------------------------------------------
# COPY INTO from moto S3


@pytest.fixture()
def bucket(stack):
    s3 = boto3.client("s3", endpoint_url=stack[1], aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    name = f"raw-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _zstd(data: bytes) -> bytes | None:
    try:
        import zstandard  # noqa: PLC0415
    except ImportError:
        try:
            return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
    return zstandard.ZstdCompressor().compress(data)


def _setup_stage(client, db, bucket_name):
    client.run("CREATE FILE FORMAT IF NOT EXISTS NDJSON_FMT TYPE = JSON COMPRESSION = AUTO", **db)
    client.run("CREATE FILE FORMAT IF NOT EXISTS CSV_FMT TYPE = CSV FIELD_OPTIONALLY_ENCLOSED_BY = '\"' "
               "COMPRESSION = AUTO NULL_IF = ('\\\\N') EMPTY_FIELD_AS_NULL = FALSE", **db)
    client.run(f"CREATE STAGE IF NOT EXISTS RAW_STAGE URL = 's3://{bucket_name}/raw/' "
               "FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT')", **db)


def test_copy_ndjson_gzip_zstd_csv_and_skip(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    d, s = db["database"], db["schema"]
    client.run(f'CREATE TABLE "{d}"."{s}"."RAW_EVENTS" (PAYLOAD VARIANT)', **db)
    lines = [{"id": i, "s": "x\"y'z", "n": None} for i in range(3)]
    ndjson = "\n".join(json.dumps(x) for x in lines).encode() + b"\n"
    s3.put_object(Bucket=name, Key="raw/2024/a.ndjson.gz", Body=gzip.compress(ndjson))
    files = ["'a.ndjson.gz'"]
    if (z := _zstd(ndjson)) is not None:
        s3.put_object(Bucket=name, Key="raw/2024/b.ndjson.zst", Body=z)
        files.append("'b.ndjson.zst'")
    copy_sql = (f'COPY INTO "{d}"."{s}"."RAW_EVENTS" FROM @RAW_STAGE/2024/ FILES = ({", ".join(files)}) '
                "FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') ON_ERROR = ABORT_STATEMENT")
    out = client.run(copy_sql, **db)
    names = [c["name"].lower() for c in out["resultSetMetaData"]["rowType"]]
    assert names[:4] == ["file", "status", "rows_parsed", "rows_loaded"]
    assert [(r[1], r[3]) for r in out["data"]] == [("LOADED", "3")] * len(files)
    assert out["data"][0][0] == f"s3://{name}/raw/2024/a.ndjson.gz"
    got = client.run(f'SELECT PAYLOAD FROM "{d}"."{s}"."RAW_EVENTS"', **db)["data"]
    assert sorted(json.loads(r[0])["id"] for r in got) == sorted([0, 1, 2] * len(files))
    # the same files again: skipped (left out of the result, as Snowflake does), nothing duplicated
    out = client.run(copy_sql, **db)
    assert out["data"] == [["Copy executed with 0 files processed."]]
    assert client.run(f'SELECT COUNT(*) FROM "{d}"."{s}"."RAW_EVENTS"', **db)["data"] == [[str(3 * len(files))]]

    # CSV, positional columns, gzip
    client.run("CREATE TABLE RAW_CSV (A NUMBER, B TEXT, C TEXT)", **db)
    s3.put_object(Bucket=name, Key="raw/csv/c.csv.gz", Body=gzip.compress(b'1,"x,y",\\N\n2,plain,""\n'))
    csv_files = ["'c.csv.gz'"]
    if (z := _zstd(b"3,zst,z\n")) is not None:
        s3.put_object(Bucket=name, Key="raw/csv/d.csv.zst", Body=z)
        csv_files.append("'d.csv.zst'")
    out = client.run(f"COPY INTO RAW_CSV FROM @RAW_STAGE/csv/ FILES = ({', '.join(csv_files)}) "
                     "FILE_FORMAT = (FORMAT_NAME = 'CSV_FMT') ON_ERROR = ABORT_STATEMENT", **db)
    assert [r[1] for r in out["data"]] == ["LOADED"] * len(csv_files)
    got = client.run("SELECT A, B, C FROM RAW_CSV ORDER BY A", **db)["data"]
    assert got == [["1", "x,y", None], ["2", "plain", ""], ["3", "zst", "z"]][: len(csv_files) + 1]


def test_copy_corrupt_file_is_atomic(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE RAW_EVENTS (PAYLOAD VARIANT)", **db)
    good = gzip.compress(b'{"id": 1}\n{"id": 2}\n')
    s3.put_object(Bucket=name, Key="raw/x/good.ndjson.gz", Body=good)
    s3.put_object(Bucket=name, Key="raw/x/bad.ndjson.gz", Body=good[:20] + b"garbage" * 10)
    copy_sql = ("COPY INTO RAW_EVENTS FROM @RAW_STAGE/x/ FILES = ('good.ndjson.gz', 'bad.ndjson.gz') "
                "FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') ON_ERROR = ABORT_STATEMENT")
    r = client.submit(copy_sql, **db)
    assert r.status_code == 422, r.text
    assert client.run("SELECT COUNT(*) FROM RAW_EVENTS", **db)["data"] == [["0"]]
    # after fixing the bad file, a retry loads both, with no duplicates from the first attempt
    s3.put_object(Bucket=name, Key="raw/x/bad.ndjson.gz", Body=gzip.compress(b'{"id": 3}\n'))
    out = client.run(copy_sql, **db)
    assert [r[1] for r in out["data"]] == ["LOADED", "LOADED"]
    assert client.run("SELECT COUNT(*) FROM RAW_EVENTS", **db)["data"] == [["3"]]
