"""Snowflake's stateful behaviours in the local SQL API service, over HTTP: case-sensitive request context
(local/session_context.py).

Starts its own stack on free ports unless LOCAL_SF_URL (and MOTO_URL) name one: a stack found on the default
ports may run other code than this checkout's.
Run: .venv/bin/python -m pytest local/tests/test_service_state.py -q
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from test_snowflake_service import (  # noqa: E402,F401 - fixtures are used by name
    LOCAL,
    Client,
    _free_port,
    _reset,
    client,
    db,
    spec,
)


@pytest.fixture(scope="session")
def stack():
    sf_url, moto_url = os.environ.get("LOCAL_SF_URL"), os.environ.get("MOTO_URL")
    if sf_url:
        yield sf_url.rstrip("/"), (moto_url or "http://127.0.0.1:4566").rstrip("/")
        return
    run_dir = tempfile.mkdtemp(prefix="local-stack-state-")
    env = {**os.environ, "MOTO_PORT": str(_free_port()), "LOCAL_SF_PORT": str(_free_port()), "RUN_DIR": run_dir}
    subprocess.run([str(LOCAL / "stack.sh"), "up"], env=env, check=True, stdin=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{env['LOCAL_SF_PORT']}", f"http://127.0.0.1:{env['MOTO_PORT']}"
    finally:
        subprocess.run([str(LOCAL / "stack.sh"), "down"], env=env, check=False, stdin=subprocess.DEVNULL)


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
