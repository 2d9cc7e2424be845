"""The local Snowpipe Streaming REST API (local/streaming_api.py) over HTTP: hostname, scoped tokens, channels,
continuation tokens, asynchronous commits, reopen and invalidation, faults scoped by channel or pipe, the
per-channel request rate, refused rows, and appends that do not wait for a table's DML lock.

Every rule has a test here that the referee before it (commits at once, JSON hostname, hostname-only scope,
400 for an invalid channel, unscoped faults) would fail.

Run: .venv/bin/python -m pytest local/tests/test_streaming_api.py -q
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from pathlib import Path
from typing import Callable

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

PIPE = "EVENTS-STREAMING"


class Streaming:
    def __init__(self, base: str, client: Client, scope_extra: str = ""):
        self.base, self.client = base, client
        self.hostname = self.get_hostname()
        r = self.exchange(f"{scope_extra} {self.hostname}".strip())
        assert r.status_code == 200, r.text
        self.token = r.text

    def get_hostname(self) -> str:
        r = requests.get(f"{self.base}/v2/streaming/hostname", headers=self.client.headers(), timeout=5)
        assert r.status_code == 200, r.text
        return r.text.strip()

    def exchange(self, scope: str) -> requests.Response:
        return requests.post(
            f"{self.base}/oauth/token",
            data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "scope": scope},
            headers=self.client.headers(), timeout=5,
        )

    def headers(self, **extra) -> dict:
        return {"Authorization": f"Bearer {self.token}", "X-Snowflake-Authorization-Token-Type": "OAUTH", **extra}

    def channel_url(self, db: dict, pipe: str, channel: str, data: bool = False) -> str:
        prefix = "/v2/streaming/data" if data else "/v2/streaming"
        return f"{self.base}{prefix}/databases/{db['database']}/schemas/{db['schema']}/pipes/{pipe}/channels/{channel}"

    def open(self, db: dict, pipe: str, channel: str, body: dict | None = None) -> requests.Response:
        return requests.put(self.channel_url(db, pipe, channel), json=body or {}, headers=self.headers(), timeout=5)

    def token_of(self, db: dict, channel: str, pipe: str = PIPE) -> str:
        r = self.open(db, pipe, channel)
        assert r.status_code == 200, r.text
        return r.json()["next_continuation_token"]

    def append(self, db: dict, pipe: str, channel: str, token: str, rows: list[dict], offset: str | None = None,
               encoding: str | None = None, start: str | None = None, legacy: bool = False) -> requests.Response:
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
            params["offsetToken" if legacy else "endOffsetToken"] = offset
            params["startOffsetToken"] = start or offset
        return requests.post(self.channel_url(db, pipe, channel, data=True) + "/rows", params=params, data=body,
                             headers=headers, timeout=10)

    def status(self, db: dict, pipe: str, names: list[str]) -> dict:
        r = requests.post(
            f"{self.base}/v2/streaming/databases/{db['database']}/schemas/{db['schema']}/pipes/{pipe}:bulk-channel-status",
            json={"channel_names": names}, headers=self.headers(), timeout=5,
        )
        assert r.status_code == 200, r.text
        return r.json()["channel_statuses"]

    def one(self, db: dict, channel: str) -> dict:
        return self.status(db, PIPE, [channel])[channel]

    def wait_committed(self, db: dict, channel: str, offset: str, timeout: float = 5.0) -> dict:
        return wait_for(lambda: (st := self.one(db, channel))["last_committed_offset_token"] == offset and st,
                        timeout, f"{channel} never committed {offset}")


def wait_for(check: Callable, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError(what)


def admin(base: str, path: str, body: dict) -> None:
    r = requests.post(f"{base}/admin/{path}", json=body, timeout=5)
    assert r.status_code == 200, r.text


@pytest.fixture()
def streaming(stack, client) -> Streaming:
    return Streaming(stack[0], client)


@pytest.fixture()
def base(stack) -> str:
    return stack[0]


@pytest.fixture()
def instant(base) -> None:
    """Commits as soon as the commit thread sees them (tests that are not about timing)."""
    admin(base, "config", {"streaming_commit_delay_ms": [0, 0]})


@pytest.fixture()
def events(client, db) -> dict:
    client.run("CREATE TABLE EVENTS (ID NUMBER(38,0), NAME VARCHAR, TS TIMESTAMP_NTZ, V VARIANT)", **db)
    return db


def rows_of(client: Client, db: dict) -> list[list]:
    return client.run("SELECT ID, NAME, TS, V FROM EVENTS ORDER BY ID", **db)["data"]


def streaming_stats(base: str) -> dict:
    return requests.get(f"{base}/admin/stats", timeout=5).json()["streaming"]


# -- hostname, scope, host header -----------------------------------------------------------------


def test_hostname_is_plain_text_by_default_and_json_when_configured(streaming, base, client):
    r = requests.get(f"{base}/v2/streaming/hostname", headers=client.headers(), timeout=5)
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.text == base.removeprefix("http://")
    admin(base, "config", {"streaming_hostname_format": "json"})
    r = requests.get(f"{base}/v2/streaming/hostname", headers=client.headers(), timeout=5)
    assert r.json() == {"hostname": base.removeprefix("http://")}
    requests.post(f"{base}/admin/reset", timeout=5)
    assert requests.get(f"{base}/v2/streaming/hostname", headers=client.headers(), timeout=5).text == streaming.hostname


def test_scope_is_a_list_with_the_hostname_and_an_optional_granted_role(streaming, stack, client, events):
    host = streaming.hostname
    assert streaming.exchange(f"session:role:LOADER_ROLE {host}").status_code == 200
    assert streaming.exchange(f"{host} session:role:PUBLIC").status_code == 200
    role_scoped = Streaming(stack[0], client, scope_extra="session:role:LOADER_ROLE")
    assert role_scoped.open(events, PIPE, "C").status_code == 200
    for scope in (f"session:role:NO_SUCH_ROLE {host}", f"refresh_token {host}", "session:role:LOADER_ROLE", ""):
        r = streaming.exchange(scope)
        assert (r.status_code, r.json()["code"]) == (400, "ERR_INVALID_REQUEST"), scope


def test_an_ingest_host_with_an_underscore_is_refused(streaming, events):
    r = requests.put(streaming.channel_url(events, PIPE, "C"), json={},
                     headers=streaming.headers(Host="my_account.ingest.local"), timeout=5)
    assert (r.status_code, r.json()["code"]) == (400, "ERR_INVALID_HOST")
    r = requests.put(streaming.channel_url(events, PIPE, "C"), json={},
                     headers=streaming.headers(Host="my-account.ingest.local"), timeout=5)
    assert r.status_code == 200, r.text


# -- channels ----------------------------------------------------------------------------------------


def test_open_append_commit_and_reopen_returns_the_offset_token(streaming, client, events, instant):
    r = streaming.open(events, "events-streaming", "shard-1")
    assert r.status_code == 200, r.text
    opened = r.json()
    assert opened["channel_status"]["last_committed_offset_token"] is None
    assert opened["channel_status"]["channel_status_code"] == "SUCCESS"
    assert opened["channel_status"]["channel_name"] == "shard-1"
    token = opened["next_continuation_token"]
    rows = [{"ID": 1, "NAME": "a", "TS": "2024-01-02 03:04:05.123", "V": {"k": [1, 2]}},
            {"id": 2, "name": "Zoë ☃", "ts": None, "v": None}]
    r = streaming.append(events, PIPE, "SHARD-1", token, rows, offset="41", encoding="zstd")
    assert r.status_code == 200, r.text
    token = r.json()["next_continuation_token"]
    r = streaming.append(events, PIPE, "SHARD-1", token, [{"ID": 3, "NAME": "c"}], offset="42", encoding="gzip")
    assert r.status_code == 200, r.text
    st = streaming.wait_committed(events, "SHARD-1", "42")
    assert (st["rows_inserted"], st["channel_name"]) == (3, "shard-1")  # named as first written
    assert rows_of(client, events) == [
        ["1", "a", "1704164645.123000000", '{"k":[1,2]}'],
        ["2", "Zoë ☃", None, None],
        ["3", "c", None, None],
    ]
    assert list(streaming.status(events, PIPE, ["Shard-1", "NO-SUCH"])) == ["Shard-1"]  # keyed as asked
    # Reopening answers the committed offset token and bumps the client sequencer: the old token is stale.
    reopened = streaming.open(events, PIPE, "SHARD-1").json()
    assert reopened["channel_status"]["last_committed_offset_token"] == "42"
    r = streaming.append(events, PIPE, "SHARD-1", token, [{"ID": 4}], offset="43")
    assert (r.status_code, r.json()["code"]) == (400, "STALE_CONTINUATION_TOKEN_SEQUENCER")
    time.sleep(0.2)
    assert len(rows_of(client, events)) == 3


def test_start_and_end_offset_tokens_and_the_older_offset_token(streaming, events, instant):
    token = streaming.token_of(events, "C")
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}, {"ID": 2}], start="5", offset="7")
    assert r.status_code == 200, r.text
    streaming.wait_committed(events, "C", "7")
    r = streaming.append(events, PIPE, "C", r.json()["next_continuation_token"], [{"ID": 3}], offset="8", legacy=True)
    assert r.status_code == 200, r.text
    streaming.wait_committed(events, "C", "8")


# -- asynchronous commits ---------------------------------------------------------------------------


def test_an_accepted_append_is_not_committed_until_the_delay_has_passed(streaming, client, events, base):
    admin(base, "config", {"streaming_commit_delay_ms": [700, 700]})
    token = streaming.token_of(events, "C")
    t0 = time.monotonic()
    assert streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1").status_code == 200
    st = streaming.one(events, "C")
    assert (st["last_committed_offset_token"], st["rows_inserted"], st["rows_parsed"]) == (None, 0, 0)
    assert rows_of(client, events) == []
    assert streaming_stats(base)["channels"][f"{events['database']}.{events['schema']}.{PIPE}.C"]["pending"] == 1
    st = streaming.wait_committed(events, "C", "1")
    assert time.monotonic() - t0 >= 0.65
    assert (st["rows_inserted"], st["rows_parsed"]) == (1, 1)
    assert rows_of(client, events) == [["1", None, None, None]]
    stats = streaming_stats(base)
    assert (stats["appends_accepted"], stats["appends_committed"], stats["appends_discarded"]) == (1, 1, 0)


def test_appends_commit_in_order_per_channel(streaming, client, events, base):
    admin(base, "config", {"streaming_commit_delay_ms": [800, 800]})
    token = streaming.token_of(events, "C")
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    admin(base, "config", {"streaming_commit_delay_ms": [0, 0]})
    r = streaming.append(events, PIPE, "C", r.json()["next_continuation_token"], [{"ID": 2}], offset="2")
    assert r.status_code == 200
    time.sleep(0.3)  # the second is due, but waits for the first
    assert streaming.one(events, "C")["last_committed_offset_token"] is None
    assert rows_of(client, events) == []
    streaming.wait_committed(events, "C", "2")
    assert [r[0] for r in rows_of(client, events)] == ["1", "2"]


def test_reopening_discards_what_was_not_committed(streaming, client, events, base):
    admin(base, "config", {"streaming_commit_delay_ms": [0, 0]})
    token = streaming.token_of(events, "C")
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    streaming.wait_committed(events, "C", "1")
    admin(base, "config", {"streaming_commit_delay_ms": [600, 600]})
    r = streaming.append(events, PIPE, "C", r.json()["next_continuation_token"], [{"ID": 2}], offset="2")
    assert r.status_code == 200
    reopened = streaming.open(events, PIPE, "C").json()
    assert reopened["channel_status"]["last_committed_offset_token"] == "1"
    time.sleep(1.0)
    assert [r[0] for r in rows_of(client, events)] == ["1"]
    assert streaming.one(events, "C")["last_committed_offset_token"] == "1"
    assert streaming_stats(base)["appends_discarded"] == 1
    r = streaming.append(events, PIPE, "C", reopened["next_continuation_token"], [{"ID": 2}], offset="2")
    assert r.status_code == 200
    streaming.wait_committed(events, "C", "2")
    assert [r[0] for r in rows_of(client, events)] == ["1", "2"]


def test_an_invalidated_channel_answers_409_and_loses_what_was_not_committed(streaming, client, events, base):
    admin(base, "config", {"streaming_commit_delay_ms": [600, 600]})
    token = streaming.token_of(events, "C")
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    admin(base, "faults", {"invalidate_channel": "c"})
    assert streaming.one(events, "C")["channel_status_code"] == "ERR_CHANNEL_MUST_BE_REOPENED"
    r = streaming.append(events, PIPE, "C", r.json()["next_continuation_token"], [{"ID": 2}], offset="2")
    assert (r.status_code, r.json()["code"]) == (409, "ERR_CHANNEL_MUST_BE_REOPENED")
    time.sleep(1.0)
    assert rows_of(client, events) == []
    reopened = streaming.open(events, PIPE, "C").json()
    assert reopened["channel_status"]["channel_status_code"] == "SUCCESS"
    assert reopened["channel_status"]["last_committed_offset_token"] is None
    admin(base, "config", {"streaming_commit_delay_ms": [0, 0]})
    r = streaming.append(events, PIPE, "C", reopened["next_continuation_token"], [{"ID": 1}], offset="1")
    streaming.wait_committed(events, "C", "1")
    assert rows_of(client, events) == [["1", None, None, None]]


def test_a_schema_change_under_an_open_channel_invalidates_it(streaming, client, events, base):
    admin(base, "config", {"streaming_commit_delay_ms": [500, 500]})
    token = streaming.token_of(events, "C")
    assert streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1").status_code == 200
    client.run("ALTER TABLE EVENTS ADD COLUMN EXTRA VARCHAR", **events)
    wait_for(lambda: streaming.one(events, "C")["channel_status_code"] == "ERR_CHANNEL_MUST_BE_REOPENED", 3,
             "the channel stayed valid")
    assert rows_of(client, events) == []
    assert streaming.open(events, PIPE, "C").json()["channel_status"]["channel_status_code"] == "SUCCESS"


# -- faults -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [408, 429, 500, 503])
def test_a_status_fault_scoped_to_a_channel_refuses_only_that_channel(streaming, client, events, base, instant, status):
    a, b = streaming.token_of(events, "A"), streaming.token_of(events, "B")
    admin(base, "faults", {"streaming_status": status, "count": 1, "channel": "a"})
    admin(base, "faults", {"streaming_status": status, "count": 1, "pipe": "OTHER-STREAMING"})
    assert streaming.append(events, PIPE, "B", b, [{"ID": 2}], offset="1").status_code == 200
    r = streaming.append(events, PIPE, "A", a, [{"ID": 1}], offset="1")
    assert r.status_code == status
    assert r.json()["code"].startswith("ERR_")
    assert streaming.append(events, PIPE, "A", a, [{"ID": 1}], offset="1").status_code == 200  # retried as is
    streaming.wait_committed(events, "A", "1")
    streaming.wait_committed(events, "B", "1")
    assert [r[0] for r in rows_of(client, events)] == ["1", "2"]
    assert [f["pipe"] for f in streaming_stats(base)["faults"]] == ["OTHER-STREAMING"]


def test_a_fault_with_count_zero_clears_the_armed_ones_within_its_scope(base):
    admin(base, "faults", {"streaming_status": 503, "count": 3, "channel": "a"})
    admin(base, "faults", {"streaming_status": 503, "count": 3, "channel": "b"})
    admin(base, "faults", {"streaming_drop_connection": True, "count": 2})
    admin(base, "faults", {"streaming_status": 503, "count": 0, "channel": "a"})
    assert sorted((f["kind"], f["channel"]) for f in streaming_stats(base)["faults"]) == [("drop", None), ("status", "B")]
    admin(base, "faults", {"streaming_status": 503, "streaming_drop_connection": True, "count": 0})
    assert streaming_stats(base)["faults"] == []


def test_a_409_fault_invalidates_the_channel(streaming, events, base, instant):
    token = streaming.token_of(events, "C")
    admin(base, "faults", {"streaming_status": 409, "count": 1, "channel": "C"})
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    assert (r.status_code, r.json()["code"]) == (409, "ERR_CHANNEL_MUST_BE_REOPENED")
    assert streaming.one(events, "C")["channel_status_code"] == "ERR_CHANNEL_MUST_BE_REOPENED"
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    assert r.status_code == 409  # until reopened
    token = streaming.token_of(events, "C")
    assert streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1").status_code == 200


def test_a_connection_dropped_before_the_append_applies(streaming, client, events, base, instant):
    token = streaming.token_of(events, "C")
    admin(base, "faults", {"streaming_drop_connection": True, "count": 1, "channel": "C"})
    with pytest.raises(requests.exceptions.ConnectionError):
        streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    assert streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1").status_code == 200
    streaming.wait_committed(events, "C", "1")
    assert rows_of(client, events) == [["1", None, None, None]]


def test_a_connection_dropped_after_the_append_applies_then_the_resend_is_stale(streaming, client, events, base,
                                                                                 instant):
    token = streaming.token_of(events, "C")
    admin(base, "faults", {"streaming_drop_connection": True, "count": 1, "after_apply": True, "channel": "C"})
    with pytest.raises(requests.exceptions.ConnectionError):
        streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    assert (r.status_code, r.json()["code"]) == (400, "STALE_CONTINUATION_TOKEN_ROW_SEQUENCER")
    streaming.wait_committed(events, "C", "1")  # the first copy was applied: it commits once
    time.sleep(0.2)
    assert rows_of(client, events) == [["1", None, None, None]]


def test_a_replayed_continuation_token_is_refused_and_adds_no_row(streaming, client, events, instant):
    token = streaming.token_of(events, "C")
    assert streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1").status_code == 200
    r = streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1")
    assert (r.status_code, r.json()["code"]) == (400, "STALE_CONTINUATION_TOKEN_ROW_SEQUENCER")
    streaming.wait_committed(events, "C", "1")
    assert rows_of(client, events) == [["1", None, None, None]]


def test_a_channel_over_its_request_rate_is_refused_429(streaming, events, base, instant):
    admin(base, "config", {"streaming_requests_per_second": 3})
    token = streaming.token_of(events, "C")  # creating the channel is not counted against it
    for i in range(3):
        r = streaming.append(events, PIPE, "C", token, [{"ID": i}], offset=str(i))
        assert r.status_code == 200, r.text
        token = r.json()["next_continuation_token"]
    r = streaming.append(events, PIPE, "C", token, [{"ID": 3}], offset="3")
    assert (r.status_code, r.json()["code"]) == (429, "ERR_TOO_MANY_REQUESTS")
    assert streaming.token_of(events, "OTHER")  # another channel is not limited by this one
    time.sleep(1.05)
    assert streaming.append(events, PIPE, "C", token, [{"ID": 3}], offset="3").status_code == 200


def test_the_default_request_rate_is_ten_per_second_per_channel(streaming, events, instant):
    token = streaming.token_of(events, "C")
    answers = []
    t0 = time.monotonic()
    for i in range(11):
        r = streaming.append(events, PIPE, "C", token, [{"ID": i}], offset=str(i))
        answers.append(r.status_code)
        if r.status_code == 200:
            token = r.json()["next_continuation_token"]
    if time.monotonic() - t0 >= 1.0:  # too slow a machine to put 11 requests in one second
        pytest.skip("11 appends took a second or more")
    assert answers[:10] == [200] * 10 and answers[10] == 429, answers


# -- refused rows, limits, refusals ----------------------------------------------------------------------


def test_refused_rows_are_counted_at_commit_with_the_last_error(streaming, client, events, base):
    client.run("CREATE TABLE STRICT_T (ID NUMBER(38,0) NOT NULL, N NUMBER(38,0))", **events)
    admin(base, "config", {"streaming_commit_delay_ms": [400, 400]})
    pipe = "STRICT_T-STREAMING"
    token = streaming.token_of(events, "C", pipe=pipe)
    rows = [{"ID": 1}, {"ID": 2, "N": "not a number"}, {"N": 3}, {"ID": 4, "NOPE": 1}]
    r = streaming.append(events, pipe, "C", token, rows, start="8", offset="9")
    assert r.status_code == 200, r.text
    st = streaming.status(events, pipe, ["C"])["C"]
    assert (st["rows_parsed"], st["rows_error_count"], st["last_error_offset_upper_bound"]) == (0, 0, None)
    st = wait_for(lambda: (s := streaming.status(events, pipe, ["C"])["C"])["last_committed_offset_token"] == "9"
                  and s, 5, "never committed")
    assert (st["rows_parsed"], st["rows_inserted"], st["rows_error_count"]) == (4, 2, 2)
    assert st["last_error_offset_upper_bound"] == "9"
    assert st["last_error_message"] and st["last_error_timestamp"]
    # a field naming no column is dropped, the rest of the row lands
    assert client.run("SELECT ID, N FROM STRICT_T ORDER BY ID", **events)["data"] == [["1", None], ["4", None]]


def test_rows_that_duckdb_takes_but_snowflake_refuses_are_refused_in_a_many_row_commit(streaming, client, events,
                                                                                         instant):
    """A commit inserts a group of rows at once straight into DuckDB only where DuckDB refuses what Snowflake does:
    a year past 9999 (DuckDB takes it) or a VARIANT value (DuckDB keeps a plain string as written) goes through
    the strict path, row by row."""
    pipe = "EVENTS-STREAMING"
    token = streaming.token_of(events, "C", pipe=pipe)
    rows = [{"ID": 1, "TS": "2024-03-05 07:00:00"}, {"ID": 2, "TS": "10000-01-01 00:00:00"},
            {"ID": 3, "TS": "2024-03-05 08:00:00"}]
    r = streaming.append(events, pipe, "C", token, rows, start="1", offset="1")
    assert r.status_code == 200, r.text
    st = wait_for(lambda: (s := streaming.status(events, pipe, ["C"])["C"])["last_committed_offset_token"] == "1"
                  and s, 5, "never committed")
    assert (st["rows_inserted"], st["rows_error_count"]) == (2, 1)
    assert [r[0] for r in rows_of(client, events)] == ["1", "3"]
    # a VARIANT column takes the two rows as fakesnow stores them, the same as one row at a time
    r = streaming.append(events, pipe, "C", token, [{"ID": 4, "V": {"a": 1}}, {"ID": 5, "V": {"b": [2]}}],
                         start="2", offset="2")
    assert r.status_code == 200, r.text
    wait_for(lambda: streaming.status(events, pipe, ["C"])["C"]["last_committed_offset_token"] == "2", 5, "no commit")
    one = streaming.append(events, pipe, "C", r.json()["next_continuation_token"], [{"ID": 6, "V": {"a": 1}}],
                           start="3", offset="3")
    assert one.status_code == 200, one.text
    wait_for(lambda: streaming.status(events, pipe, ["C"])["C"]["last_committed_offset_token"] == "3", 5, "no commit")
    v = {row[0]: row[3] for row in rows_of(client, events)}
    assert v["4"] == v["6"], v


def test_a_pipe_holds_a_limited_number_of_channels_named_case_insensitively(streaming, events, base):
    admin(base, "config", {"streaming_channels_per_pipe": 2})
    assert streaming.open(events, PIPE, "A").status_code == 200
    assert streaming.open(events, PIPE, "b").status_code == 200
    assert streaming.open(events, PIPE, "B").status_code == 200  # the same channel
    r = streaming.open(events, PIPE, "C")
    assert (r.status_code, r.json()["code"]) == (400, "ERR_TOO_MANY_CHANNELS")
    assert requests.delete(streaming.channel_url(events, PIPE, "a"), headers=streaming.headers(),
                           timeout=5).status_code == 200
    assert streaming.open(events, PIPE, "C").status_code == 200
    assert streaming_stats(base)["channels_per_pipe"] == 2
    requests.post(f"{base}/admin/reset", timeout=5)
    assert streaming_stats(base)["channels_per_pipe"] == 2000


def test_refusals(streaming, client, events, stack):
    # the account's own JWT is not a scoped token
    r = requests.put(streaming.channel_url(events, PIPE, "C"), json={}, headers=client.headers(), timeout=5)
    assert r.status_code == 401
    assert streaming.open(events, "NOPE-STREAMING", "C").json()["code"] == "ERR_TABLE_DOES_NOT_EXIST_NOT_AUTHORIZED"
    assert streaming.open(events, "CUSTOM_PIPE", "C").status_code == 404
    r = streaming.append(events, PIPE, "NEVER-OPENED", "1_0", [{"ID": 1}])
    assert (r.status_code, r.json()["code"]) == (404, "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED")
    token = streaming.token_of(events, "C")
    big = [{"ID": i, "NAME": "x" * 1000} for i in range(4300)]
    r = streaming.append(events, PIPE, "C", token, big)
    assert (r.status_code, r.json()["code"]) == (413, "ERR_PAYLOAD_TOO_LARGE")
    r = requests.post(streaming.channel_url(events, PIPE, "C", data=True) + "/rows",
                      params={"continuationToken": token}, data=b'{"ID": 1}\n[1]\n', headers=streaming.headers(), timeout=5)
    assert (r.status_code, r.json()["code"]) == (400, "ERR_INVALID_NDJSON")
    assert requests.delete(streaming.channel_url(events, PIPE, "C"), headers=streaming.headers(),
                           timeout=5).status_code == 200
    assert streaming.status(events, PIPE, ["C"]) == {}
    assert rows_of(client, events) == []


def test_an_append_does_not_wait_for_the_tables_dml_lock(streaming, client, events, stack, instant):
    client.run("INSERT INTO EVENTS (ID) VALUES (0)", **events)
    requests.post(f"{stack[0]}/admin/faults", json={"hold_table_lock_ms": 3000, "count": 1}, timeout=5)
    holder = threading.Thread(target=client.run, args=("UPDATE EVENTS SET NAME = 'held' WHERE ID = 0",), kwargs=events)
    holder.start()
    time.sleep(0.5)  # the UPDATE now holds the lock for 3 s
    token = streaming.token_of(events, "C")
    t0 = time.monotonic()
    assert streaming.append(events, PIPE, "C", token, [{"ID": 1}], offset="1").status_code == 200
    streaming.wait_committed(events, "C", "1", timeout=2.0)
    assert time.monotonic() - t0 < 1.5
    holder.join()
    assert rows_of(client, events) == [["0", "held", None, None], ["1", None, None, None]]
