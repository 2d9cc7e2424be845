"""The Snowflake timing model (local/warehouse_timing.py) and the engine's two-sided lock (local/exec_lock.py)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import exec_lock  # noqa: E402
import warehouse_timing  # noqa: E402
from test_snowflake_service import _reset, client, db, spec, stack  # noqa: E402,F401 - fixtures are used by name


def _wait_for(check, what: str, within: float = 20.0):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (value := check()):
            return value
        time.sleep(0.05)
    pytest.fail(f"never saw {what}")


def test_a_modelled_merge_holds_its_table_lock_and_hides_its_rows_while_other_tables_go_on(client, db, stack):
    client.run("CREATE TABLE A (ID NUMBER, V TEXT)", **db)
    client.run("CREATE TABLE B (ID NUMBER)", **db)
    client.run("INSERT INTO A VALUES (1, 'old')", **db)
    r = requests.post(f"{stack[0]}/admin/config", json={"timing_model": "snowflake",
                                                       "timing_params": {"dml_fixed_ms": 6000}}, timeout=5)
    assert r.status_code == 200, r.text
    merge = client.submit("MERGE INTO A USING (SELECT 1 AS ID, 'new' AS V) S ON A.ID = S.ID "
                          "WHEN MATCHED THEN UPDATE SET V = S.V", async_=True, **db)
    handle = merge.json()["statementHandle"]
    held = lambda: requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["table_locks"]["held"]  # noqa: E731
    _wait_for(lambda: any(k.endswith(".A") for k in held()), "the MERGE holding A's lock")
    # A read of A does not see the MERGE's rows before its cost is spent...
    assert client.run("SELECT V FROM A", **db)["data"] == [["old"]]
    assert client.get(handle).status_code == 202, "the MERGE ended before its modelled cost"
    # ...and a locking statement on another table runs beside it: both locks held at once.
    update = client.submit("UPDATE B SET ID = 2", async_=True, **db).json()["statementHandle"]
    _wait_for(lambda: {k.rsplit(".", 1)[-1] for k in held()} >= {"A", "B"}, "A's and B's locks held together")
    _wait_for(lambda: client.get(handle).status_code == 200, "the MERGE finishing")
    _wait_for(lambda: client.get(update).status_code == 200, "the UPDATE finishing")
    assert client.run("SELECT V FROM A", **db)["data"] == [["new"]]
    stats = requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["timing"]
    assert stats["model"] == "snowflake" and stats["dml_fixed_ms"] == 6000


def test_the_model_is_off_by_default_and_refuses_unknown_settings(stack):
    assert requests.get(f"{stack[0]}/admin/stats", timeout=5).json()["timing"]["model"] == "off"
    r = requests.post(f"{stack[0]}/admin/config", json={"timing_model": "fast"}, timeout=5)
    assert r.status_code == 400 and "timing_model" in r.json()["message"]
    r = requests.post(f"{stack[0]}/admin/config", json={"timing_params": {"nope_ms": 1}}, timeout=5)
    assert r.status_code == 400 and "nope_ms" in r.json()["message"]


def test_model_costs():
    m = warehouse_timing.Model()
    assert m.dml_seconds(1000) == 0 and m.append_seconds() == 0  # off
    assert m.commit_delay_seconds((200, 200)) == pytest.approx(0.2)
    m.configure({"timing_model": "snowflake", "timing_params": {"ingest_ms": "7000-7000"}})
    assert m.dml_seconds(1000) == pytest.approx(1.05)  # 1000 ms + 1000 rows x 0.05 ms
    assert m.commit_delay_seconds((200, 200)) == pytest.approx(7.0)
    assert m.refresh_lead_seconds() == pytest.approx(2.0)


def test_shared_holders_overlap_and_an_exclusive_one_runs_alone():
    lock = exec_lock.ExecLock()
    inside, release = threading.Barrier(3), threading.Event()
    order: list[str] = []

    def shared(name: str) -> None:
        with lock.shared():
            inside.wait(5)  # both shared holders are inside at once, or this times out
            release.wait(5)
            order.append(name)

    def exclusive() -> None:
        with lock:
            order.append("exclusive")

    readers = [threading.Thread(target=shared, args=(n,)) for n in ("r1", "r2")]
    for t in readers:
        t.start()
    inside.wait(5)
    writer = threading.Thread(target=exclusive)
    writer.start()
    time.sleep(0.1)
    assert order == []  # the exclusive holder waits for the shared ones
    release.set()
    for t in [*readers, writer]:
        t.join(5)
    assert order[-1] == "exclusive" and sorted(order[:2]) == ["r1", "r2"]


def test_suspended_lets_go_of_the_lock_for_the_block():
    lock = exec_lock.ExecLock()
    got = threading.Event()
    with lock.shared(), lock.suspended():
        t = threading.Thread(target=lambda: (lock.acquire(), got.set(), lock.release()))
        t.start()
        assert got.wait(5)  # an exclusive holder got in while this thread's shared side was let go
        t.join(5)
