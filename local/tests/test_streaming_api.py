"""The local Snowpipe Streaming REST API (local/streaming_api.py) over HTTP: scoped tokens, channels,
continuation tokens, committed offset tokens, exact rows, faults, and appends that do not wait for a
table's DML lock.

Run: .venv/bin/python -m pytest local/tests/test_streaming_api.py -q
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_snowflake_service import (  # noqa: E402,F401 - fixtures are used by name
    Client,
    _reset,
    client,
    db,
    spec,
    stack,
)


class Streaming:
    def __init__(self, base: str, client: Client):
        self.base, self.client = base, client
        host = requests.get(f"{base}/v2/streaming/hostname", headers=client.headers(), timeout=5)
        assert host.status_code == 200, host.text
        self.hostname = host.json()["hostname"]
        r = requests.post(
            f"{base}/oauth/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "scope": self.hostname},
            headers=client.headers(),
            timeout=5,
        )
        assert r.status_code == 200, r.text
        self.token = r.text

    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token}", "X-Snowflake-Authorization-Token-Type": "OAUTH", **extra}

    def channel_url(self, db: dict, pipe: str, channel: str, data: bool = False) -> str:
        prefix = "/v2/streaming/data" if data else "/v2/streaming"
        return f"{self.base}{prefix}/databases/{db['database']}/schemas/{db['schema']}/pipes/{pipe}/channels/{channel}"

    def open(self, db: dict, pipe: str, channel: str, body: dict | None = None) -> requests.Response:
        return requests.put(self.channel_url(db, pipe, channel), json=body or {}, headers=self.headers(), timeout=5)

    def append(self, db: dict, pipe: str, channel: str, token: str, rows: list[dict], offset: str | None = None,
               encoding: str | None = None) -> requests.Response:
        body = "".join(json.dumps(r) + "\n" for r in rows).encode()
        headers = self.headers(**{"Content-Type": "application/x-ndjson"})
        if encoding == "gzip":
            body = gzip.compress(body)
        elif encoding == "zstd":
            body = zstandard.ZstdCompressor().compress(body)
        if encoding:
            headers["Content-Encoding"] = encoding
        params = {"continuationToken": token}
        if offset is not None:
            params["offsetToken"] = offset
        return requests.post(self.channel_url(db, pipe, channel, data=True) + "/rows", params=params, data=body,
                             headers=headers, timeout=10)

    def status(self, db: dict, pipe: str, names: list[str]) -> dict:
        r = requests.post(
            f"{self.base}/v2/streaming/databases/{db['database']}/schemas/{db['schema']}/pipes/{pipe}:bulk-channel-status",
            json={"channel_names": names}, headers=self.headers(), timeout=5,
        )
        assert r.status_code == 200, r.text
        return r.json()["channel_statuses"]


@pytest.fixture()
def streaming(stack, client) -> Streaming:
    return Streaming(stack[0], client)


@pytest.fixture()
def events(client, db) -> dict:
    client.run("CREATE TABLE EVENTS (ID NUMBER(38,0), NAME VARCHAR, TS TIMESTAMP_NTZ, V VARIANT)", **db)
    return db


def rows_of(client: Client, db: dict) -> list[list]:
    return client.run("SELECT ID, NAME, TS, V FROM EVENTS ORDER BY ID", **db)["data"]


def test_open_append_commit_and_reopen_returns_the_offset_token(streaming, client, events):
    r = streaming.open(events, "events-streaming", "shard-1")
    assert r.status_code == 200, r.text
    opened = r.json()
    assert opened["channel_status"]["last_committed_offset_token"] is None
    assert opened["channel_status"]["channel_status_code"] == "ACTIVE"
    token = opened["next_continuation_token"]
    rows = [{"ID": 1, "NAME": "a", "TS": "2024-01-02 03:04:05.123", "V": {"k": [1, 2]}},
            {"id": 2, "name": "Zoë ☃", "ts": None, "v": None}]
    r = streaming.append(events, "EVENTS-STREAMING", "SHARD-1", token, rows, offset="41", encoding="zstd")
    assert r.status_code == 200, r.text
    token = r.json()["next_continuation_token"]
    r = streaming.append(events, "EVENTS-STREAMING", "SHARD-1", token, [{"ID": 3, "NAME": "c"}], offset="42",
                         encoding="gzip")
    assert r.status_code == 200, r.text
    assert rows_of(client, events) == [
        ["1", "a", "1704164645.123000000", '{"k":[1,2]}'],
        ["2", "Zoë ☃", None, None],
        ["3", "c", None, None],
    ]
    status = streaming.status(events, "EVENTS-STREAMING", ["SHARD-1", "NO-SUCH"])
    assert list(status) == ["SHARD-1"]
    assert (status["SHARD-1"]["last_committed_offset_token"], status["SHARD-1"]["rows_inserted"]) == ("42", 3)
    # Reopening answers the committed offset token and bumps the client sequencer: the old token is stale.
    reopened = streaming.open(events, "EVENTS-STREAMING", "SHARD-1").json()
    assert reopened["channel_status"]["last_committed_offset_token"] == "42"
    r = streaming.append(events, "EVENTS-STREAMING", "SHARD-1", token, [{"ID": 4}], offset="43")
    assert (r.status_code, r.json()["code"]) == (400, "STALE_CONTINUATION_TOKEN_SEQUENCER")
    assert len(rows_of(client, events)) == 3


def test_a_replayed_continuation_token_is_refused_and_adds_no_row(streaming, client, events):
    token = streaming.open(events, "EVENTS-STREAMING", "C").json()["next_continuation_token"]
    assert streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1").status_code == 200
    r = streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1")
    assert (r.status_code, r.json()["code"]) == (400, "STALE_CONTINUATION_TOKEN_ROW_SEQUENCER")
    assert rows_of(client, events) == [["1", None, None, None]]


def test_rows_that_do_not_fit_are_counted_and_the_others_land(streaming, client, events):
    token = streaming.open(events, "EVENTS-STREAMING", "C").json()["next_continuation_token"]
    rows = [{"ID": 1}, {"ID": "not a number"}, {"ID": 3, "NOPE": 1}, {"ID": 4}]
    r = streaming.append(events, "EVENTS-STREAMING", "C", token, rows, offset="9")
    assert r.status_code == 200, r.text
    assert [r[0] for r in rows_of(client, events)] == ["1", "4"]
    st = streaming.status(events, "EVENTS-STREAMING", ["C"])["C"]
    assert (st["rows_parsed"], st["rows_inserted"], st["rows_error_count"]) == (4, 2, 2)
    assert st["last_committed_offset_token"] == "9"


def test_refusals(streaming, client, events, stack):
    # the account's own JWT is not a scoped token
    r = requests.put(streaming.channel_url(events, "EVENTS-STREAMING", "C"), json={}, headers=client.headers(), timeout=5)
    assert r.status_code == 401
    assert streaming.open(events, "NOPE-STREAMING", "C").json()["code"] == "ERR_TABLE_DOES_NOT_EXIST_NOT_AUTHORIZED"
    assert streaming.open(events, "CUSTOM_PIPE", "C").status_code == 404
    r = streaming.append(events, "EVENTS-STREAMING", "NEVER-OPENED", "1_0", [{"ID": 1}])
    assert (r.status_code, r.json()["code"]) == (404, "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED")
    token = streaming.open(events, "EVENTS-STREAMING", "C").json()["next_continuation_token"]
    big = [{"ID": i, "NAME": "x" * 1000} for i in range(4300)]
    r = streaming.append(events, "EVENTS-STREAMING", "C", token, big)
    assert (r.status_code, r.json()["code"]) == (413, "ERR_PAYLOAD_TOO_LARGE")
    r = requests.post(streaming.channel_url(events, "EVENTS-STREAMING", "C", data=True) + "/rows",
                      params={"continuationToken": token}, data=b'{"ID": 1}\n[1]\n', headers=streaming.headers(), timeout=5)
    assert (r.status_code, r.json()["code"]) == (400, "ERR_INVALID_NDJSON")
    assert rows_of(client, events) == []


def test_faults_invalidated_channel_and_drop(streaming, client, events, stack):
    base = stack[0]
    token = streaming.open(events, "EVENTS-STREAMING", "C").json()["next_continuation_token"]
    requests.post(f"{base}/admin/faults", json={"streaming_status": 429, "count": 1}, timeout=5)
    assert streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1").status_code == 429
    requests.post(f"{base}/admin/faults", json={"streaming_status": 503, "count": 1}, timeout=5)
    assert streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1").status_code == 503
    requests.post(f"{base}/admin/faults", json={"streaming_drop_connection": True, "count": 1}, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1")
    assert rows_of(client, events) == []
    requests.post(f"{base}/admin/faults", json={"invalidate_channel": "C"}, timeout=5)
    assert streaming.status(events, "EVENTS-STREAMING", ["C"])["C"]["channel_status_code"] == "INVALID"
    r = streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1")
    assert (r.status_code, r.json()["code"]) == (400, "ERR_CHANNEL_MUST_BE_REOPENED")
    token = streaming.open(events, "EVENTS-STREAMING", "C").json()["next_continuation_token"]
    assert streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1").status_code == 200
    assert rows_of(client, events) == [["1", None, None, None]]
    assert requests.delete(streaming.channel_url(events, "EVENTS-STREAMING", "C"), headers=streaming.headers(),
                           timeout=5).status_code == 200
    assert streaming.status(events, "EVENTS-STREAMING", ["C"]) == {}


def test_an_append_does_not_wait_for_the_tables_dml_lock(streaming, client, events, stack):
    client.run("INSERT INTO EVENTS (ID) VALUES (0)", **events)
    requests.post(f"{stack[0]}/admin/faults", json={"hold_table_lock_ms": 3000, "count": 1}, timeout=5)
    holder = threading.Thread(target=client.run, args=("UPDATE EVENTS SET NAME = 'held' WHERE ID = 0",), kwargs=events)
    holder.start()
    time.sleep(0.5)  # the UPDATE now holds the lock for 3 s
    token = streaming.open(events, "EVENTS-STREAMING", "C").json()["next_continuation_token"]
    t0 = time.monotonic()
    assert streaming.append(events, "EVENTS-STREAMING", "C", token, [{"ID": 1}], offset="1").status_code == 200
    assert time.monotonic() - t0 < 1.5
    holder.join()
    assert rows_of(client, events) == [["0", "held", None, None], ["1", None, None, None]]
