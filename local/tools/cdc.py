#!/usr/bin/env python3
"""The local stand-in for AWS DMS and Debezium Server: a real MariaDB, its real binary log, and
change records of both shapes on (moto's) Kinesis.

    cdc.py schema   --db shop                      create the source tables (drops them first)
    cdc.py workload --db shop --ops 20000 --seed 7 seeded random changes, then a stop marker
    cdc.py capture  --db shop --dms-stream A --debezium-stream B
                    initial snapshot (DMS `load`, Debezium `r`), then the binlog until the
                    workload's stop marker; prints a JSON summary
    cdc.py dump     --db shop --table orders       the table as JSON lines, in the text the
                                                   Snowflake SQL API gives for the target's types

Connection: MARIADB_HOST [127.0.0.1], MARIADB_PORT [3307], MARIADB_USER [root], MARIADB_PASSWORD [].
Kinesis: AWS_ENDPOINT_URL, AWS_REGION and credentials, as for the functions.

Shapes (what the upsert's `"envelope"` mappings read; functions/upsert/src/envelope.rs cites both):
- DMS to Kinesis, https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.Kinesis.html:
  `{"data": {...}, "metadata": {"timestamp", "record-type", "operation", "partition-key-type",
  "schema-name", "table-name", "transaction-id"}}` with `IncludeTransactionDetails` (transaction-id),
  `IncludeNullAndEmpty: false` (NULL columns are left out of `data`) and `BeforeImageSettings`
  (`{"EnableBeforeImage": true, "FieldName": "before-image", "ColumnFilter": "pk-only"}`) so an
  update that changes the primary key names the old key. A `create-table` control record per
  table precedes the full load. Partition key: `schema-table` (the object-mapping
  `partition-key-type`): an update that changes a key travels under the *new* key, so with
  `primary-key` partitioning the delete of the old key could overtake that key's earlier changes
  on another shard. `timestamp` is when the change was captured (strictly increasing).
- Debezium MySQL/MariaDB, JSON converter without schemas,
  https://debezium.io/documentation/reference/stable/connectors/mariadb.html#mariadb-events:
  `{"before", "after", "source": {"ts_ms", "file", "pos", "row", "snapshot", "db", "table", ...},
  "op", "ts_ms"}`; DECIMAL as text (`decimal.handling.mode=string`), DATETIME(6) as
  microseconds since the epoch (`io.debezium.time.MicroTimestamp`), JSON as text. A primary-key
  change is a delete of the old key and a create of the new one. Partition key: the record key
  (the primary key as JSON), as Debezium Server's Kinesis sink does; no tombstones
  (`tombstones.on.delete=false`).

Redeliveries: `--redeliver-every N` puts the last few records of both streams again every N
records, byte for byte, as a producer that retries a put whose answer it lost does.
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import os
import random
import sys
import time

import boto3
import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import XidEvent
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

# DECIMAL(38,9) needs more than the default 28 significant digits.
decimal.getcontext().prec = 60

CONTROL_TABLE = "capture_control"

# The source tables: composite and unicode keys, DECIMAL(38,9), DATETIME(6), JSON, NULLs.
TABLES = {
    "orders": {
        "keys": ["tenant_id", "order_id"],
        "ddl": """CREATE TABLE orders (
            tenant_id INT NOT NULL,
            order_id BIGINT NOT NULL,
            status VARCHAR(32) NOT NULL,
            customer VARCHAR(200) NULL,
            amount DECIMAL(38,9) NULL,
            placed_at DATETIME(6) NULL,
            attrs JSON NULL,
            PRIMARY KEY (tenant_id, order_id)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    },
    "customers": {
        "keys": ["code"],
        "ddl": """CREATE TABLE customers (
            code VARCHAR(64) NOT NULL PRIMARY KEY,
            name VARCHAR(200) NULL,
            balance DECIMAL(38,9) NULL,
            updated_at DATETIME(6) NULL,
            note TEXT NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    },
}
DECIMALS = {"amount", "balance"}
DATETIMES = {"placed_at", "updated_at"}
EPOCH = datetime.datetime(1970, 1, 1)


def connect(db: str | None = None, **kw) -> pymysql.Connection:
    return pymysql.connect(
        host=os.environ.get("MARIADB_HOST", "127.0.0.1"),
        port=int(os.environ.get("MARIADB_PORT", "3307")),
        user=os.environ.get("MARIADB_USER", "root"),
        password=os.environ.get("MARIADB_PASSWORD", ""),
        database=db,
        charset="utf8mb4",
        **kw,
    )


def cmd_schema(args) -> None:
    with connect() as c, c.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{args.db}`")
        cur.execute(f"CREATE DATABASE `{args.db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        cur.execute(f"USE `{args.db}`")
        for t in TABLES.values():
            cur.execute(t["ddl"])
        cur.execute(f"CREATE TABLE {CONTROL_TABLE} (id INT AUTO_INCREMENT PRIMARY KEY, cmd VARCHAR(16))")
        c.commit()


# ---------------------------------------------------------------- workload


class Workload:
    """Seeded random changes; every row change counts as one operation."""

    WORDS = ["Ada", "Grace", "Zoë", "Łukasz", "Søren", "李雷", "محمد", "Émilie", "O'Brien", 'say "hi"', "tab\tand\nnewline", "🚀 rocket"]
    STATUSES = ["NEW", "PAID", "SHIPPED", "CANCELLED", "RETURNED"]

    def __init__(self, cur, rng: random.Random):
        self.cur, self.rng, self.ops = cur, rng, 0
        self.orders: set[tuple[int, int]] = set()
        self.customers: set[str] = set()
        self.deleted_orders: list[tuple[int, int]] = []
        self.next_order = 1
        self.hot: list[tuple[int, int]] = []
        self.evolved = self.widened = False

    def decimal(self):
        r = self.rng.random()
        if r < 0.1:
            return None
        if r < 0.15:
            return decimal.Decimal(0)
        digits = self.rng.randint(1, 29)
        whole = self.rng.randrange(10 ** (digits - 1), 10**digits)
        frac = self.rng.randrange(0, 10**9)
        sign = -1 if self.rng.random() < 0.2 else 1
        return sign * (decimal.Decimal(whole) + decimal.Decimal(frac).scaleb(-9))

    def moment(self):
        if self.rng.random() < 0.1:
            return None
        # MariaDB's whole DATETIME range (1000..9999), and often near 1970, where epoch
        # microseconds look like milliseconds to a reader that guesses the unit.
        if self.rng.random() < 0.2:
            secs = self.rng.randrange(-40_000_000, 40_000_000)
        else:
            secs = self.rng.randrange(-30_610_224_000, 253_402_300_800)
        return EPOCH + datetime.timedelta(seconds=secs, microseconds=self.rng.randrange(0, 1_000_000))

    def text(self):
        if self.rng.random() < 0.1:
            return None
        return " ".join(self.rng.choice(self.WORDS) for _ in range(self.rng.randint(1, 3)))

    def attrs(self):
        if self.rng.random() < 0.15:
            return None
        return json.dumps(
            {"tags": self.rng.sample(self.WORDS, 2), "n": self.rng.randint(-5, 5), "ok": self.rng.random() < 0.5, "nested": {"x": None}},
            ensure_ascii=False,
        )

    CHANNELS = ["web", "app", "store", "phone"]

    def order_values(self):
        values = (self.rng.choice(self.STATUSES), self.text(), self.decimal(), self.moment(), self.attrs())
        return values + ((self.rng.choice(self.CHANNELS),) if self.evolved else ())

    def order_columns(self):
        return ["status", "customer", "amount", "placed_at", "attrs"] + (["channel"] if self.evolved else [])

    def evolve(self, half: int, three_quarters: int) -> None:
        """The source changes shape mid-workload, as producers do: orders gains a column (the
        upsert's schema evolution adds it to the targets), then customers.name is widened and
        longer names follow (the targets' VARCHAR already holds them)."""
        if not self.evolved and self.ops >= half:
            self.cur.execute("ALTER TABLE orders ADD COLUMN channel VARCHAR(16) NULL")
            self.evolved = True
        if not self.widened and self.ops >= three_quarters:
            self.cur.execute("ALTER TABLE customers MODIFY name VARCHAR(400) NULL")
            self.widened = True

    def name(self):
        name = self.text()
        if self.widened and name is not None and self.rng.random() < 0.3:
            name = (name + " ") * (250 // (len(name) + 1) + 1)
            name = name[:300]
        return name

    def insert_order(self, key=None):
        if key is None:
            if self.deleted_orders and self.rng.random() < 0.3:
                key = self.deleted_orders.pop(self.rng.randrange(len(self.deleted_orders)))
            else:
                key = (self.rng.randint(1, 4), self.next_order)
                self.next_order += 1
        elif key in self.deleted_orders:
            self.deleted_orders.remove(key)
        columns = ["tenant_id", "order_id"] + self.order_columns()
        self.cur.execute(
            f"INSERT INTO orders ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
            key + self.order_values(),
        )
        self.orders.add(key)
        self.ops += 1

    def update_order(self, key):
        columns = self.order_columns()
        cols = self.rng.sample(columns, self.rng.randint(1, 3))
        values = dict(zip(columns, self.order_values()))
        sets = ", ".join(f"{c} = %s" for c in cols)
        self.cur.execute(f"UPDATE orders SET {sets} WHERE tenant_id = %s AND order_id = %s", [values[c] for c in cols] + list(key))
        self.ops += 1

    def delete_order(self, key):
        self.cur.execute("DELETE FROM orders WHERE tenant_id = %s AND order_id = %s", key)
        self.orders.discard(key)
        self.deleted_orders.append(key)
        self.ops += 1

    def rekey_order(self, key):
        new = (key[0], self.next_order)
        self.next_order += 1
        self.cur.execute("UPDATE orders SET order_id = %s, status = 'REKEYED' WHERE tenant_id = %s AND order_id = %s", (new[1],) + key)
        self.orders.discard(key)
        self.orders.add(new)
        if key in self.hot:
            self.hot[self.hot.index(key)] = new
        self.ops += 1

    def upsert_customer(self):
        if self.customers and self.rng.random() < 0.6:
            code = self.rng.choice(sorted(self.customers))
            if self.rng.random() < 0.25:
                self.cur.execute("DELETE FROM customers WHERE code = %s", (code,))
                self.customers.discard(code)
            else:
                self.cur.execute(
                    "UPDATE customers SET name = %s, balance = %s, updated_at = %s, note = %s WHERE code = %s",
                    (self.name(), self.decimal(), self.moment(), self.text(), code),
                )
        else:
            code = f"{self.rng.choice(self.WORDS)}-{self.rng.randint(1, 400)}"
            self.cur.execute(
                "REPLACE INTO customers (code, name, balance, updated_at, note) VALUES (%s,%s,%s,%s,%s)",
                (code, self.name(), self.decimal(), self.moment(), self.text()),
            )
            self.customers.add(code)
        self.ops += 1

    def step(self):
        r = self.rng.random()
        live = sorted(self.orders)
        if r < 0.25 or len(live) < 50:
            self.insert_order()
        elif r < 0.55:
            self.update_order(self.rng.choice(live))
        elif r < 0.65:
            self.delete_order(self.rng.choice(live))
        elif r < 0.68:
            key = self.rng.choice(live)
            self.delete_order(key)
            self.insert_order(key)  # delete then re-insert of the same key, one transaction
        elif r < 0.71:
            self.rekey_order(self.rng.choice(live))
        elif r < 0.76:
            # a burst on a few hot keys
            if len(self.hot) < 3:
                self.hot = self.rng.sample(live, 3)
            for _ in range(self.rng.randint(5, 20)):
                self.update_order(self.rng.choice(self.hot))
        else:
            self.upsert_customer()


def cmd_workload(args) -> None:
    rng = random.Random(args.seed)
    started = time.monotonic()
    with connect(args.db) as c, c.cursor() as cur:
        w = Workload(cur, rng)
        for _ in range(args.seed_rows):
            w.insert_order()
            if w.ops % 100 == 0:
                c.commit()
        c.commit()
        seeded = w.ops
        if args.after_snapshot:
            # the capture takes its snapshot of the seed rows while the changes below begin
            with open(args.after_snapshot, "w") as f:
                f.write("seeded\n")
        while w.ops < seeded + args.ops:
            w.evolve(seeded + args.ops // 2, seeded + args.ops * 3 // 4)
            # multi-statement transactions of 1..8 steps
            for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
                w.step()
            c.commit()
        cur.execute(f"INSERT INTO {CONTROL_TABLE} (cmd) VALUES ('stop')")
        c.commit()
    print(json.dumps({"seed_ops": seeded, "ops": w.ops - seeded, "seconds": round(time.monotonic() - started, 2)}))


# ---------------------------------------------------------------- capture


def dms_value(col: str, v):
    if isinstance(v, decimal.Decimal):
        return format(v, "f")
    if isinstance(v, datetime.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v


def debezium_value(col: str, v):
    if isinstance(v, datetime.datetime):
        delta = v - EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return dms_value(col, v)


def row_image(row: dict, value, drop_nulls: bool) -> dict:
    return {k: value(k, v) for k, v in row.items() if not (drop_nulls and v is None)}


class Capture:
    def __init__(self, args):
        self.args = args
        self.kinesis = boto3.client("kinesis", region_name=os.environ.get("AWS_REGION", "us-east-1"))
        self.pending: dict[str, list[dict]] = {args.dms_stream: [], args.debezium_stream: []}
        self.recent: dict[str, list[dict]] = {args.dms_stream: [], args.debezium_stream: []}
        self.last_us = 0
        self.counts = {"dms": 0, "debezium": 0, "redelivered": 0, "snapshot_rows": 0, "changes": 0}
        self.rng = random.Random(args.seed)
        self.since_redelivery = 0

    def now_iso(self) -> str:
        """DMS's timestamp: when the change was captured, made strictly increasing."""
        us = max(int(time.time() * 1_000_000), self.last_us + 1)
        self.last_us = us
        return (EPOCH + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def put(self, stream: str, record: dict, key: str) -> None:
        entry = {"Data": json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode(), "PartitionKey": key}
        self.pending[stream].append(entry)
        self.counts["dms" if stream == self.args.dms_stream else "debezium"] += 1
        recent = self.recent[stream]
        recent.append(entry)
        del recent[:-50]
        if len(self.pending[stream]) >= 500:
            self.flush(stream)

    def flush(self, stream: str) -> None:
        batch, self.pending[stream] = self.pending[stream], []
        while batch:
            out = self.kinesis.put_records(StreamName=stream, Records=batch)
            # Retry only what failed, in order; what succeeded keeps its sequence numbers.
            batch = [r for r, res in zip(batch, out["Records"]) if "ErrorCode" in res]
            if batch:
                time.sleep(0.1)

    def maybe_redeliver(self) -> None:
        every = self.args.redeliver_every
        if not every:
            return
        self.since_redelivery += 1
        if self.since_redelivery < every:
            return
        self.since_redelivery = 0
        for stream, recent in self.recent.items():
            n = self.rng.randint(1, len(recent)) if recent else 0
            for entry in recent[-n:]:
                self.pending[stream].append(entry)
                self.counts["redelivered"] += 1
            self.flush(stream)

    def emit(self, table: str, op: str, before: dict | None, after: dict | None, source: dict, txid) -> None:
        keys = TABLES[table]["keys"]
        a = self.args
        # Debezium: a key change is a delete of the old key and a create of the new one.
        if op == "u" and before is not None and any(before[k] != after[k] for k in keys):
            self.emit(table, "d", before, None, source, txid)
            self.emit(table, "c", None, after, source, txid)
            self.emit_dms(table, "update", before, after, txid)
            return
        image = after if after is not None else before
        record = {
            "before": None if before is None else row_image(before, debezium_value, False),
            "after": None if after is None else row_image(after, debezium_value, False),
            "source": source,
            "op": op,
            "ts_ms": int(time.time() * 1000),
            "transaction": None,
        }
        key = json.dumps({k: debezium_value(k, image[k]) for k in keys}, ensure_ascii=False, separators=(",", ":"))
        self.put(a.debezium_stream, record, key)
        dms_op = {"r": "load", "c": "insert", "u": "update", "d": "delete"}[op]
        self.emit_dms(table, dms_op, before, after, txid)

    def emit_dms(self, table, op, before, after, txid) -> None:
        keys = TABLES[table]["keys"]
        image = after if after is not None else before
        meta = {
            "timestamp": self.now_iso(),
            "record-type": "data",
            "operation": op,
            "partition-key-type": "schema-table",
            "schema-name": self.args.db,
            "table-name": table,
        }
        if txid is not None:
            meta["transaction-id"] = txid
        record = {"data": row_image(image, dms_value, True), "metadata": meta}
        if op == "update" and before is not None:
            record["before-image"] = {k: dms_value(k, before[k]) for k in keys}
        self.put(self.args.dms_stream, record, f"{self.args.db}.{table}")

    def control(self, table: str) -> None:
        meta = {
            "timestamp": self.now_iso(),
            "record-type": "control",
            "operation": "create-table",
            "partition-key-type": "task-id",
            "schema-name": self.args.db,
            "table-name": table,
        }
        self.put(self.args.dms_stream, {"control": {}, "metadata": meta}, f"{self.args.db}.{table}")

    def snapshot(self):
        """A consistent read of every table at a known binlog position (what Debezium's
        snapshot and DMS's full load start from); changes after that position come live."""
        with connect(self.args.db) as c, c.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("FLUSH TABLES WITH READ LOCK")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            cur.execute("SHOW MASTER STATUS")
            status = cur.fetchone()
            cur.execute("UNLOCK TABLES")
            log_file, log_pos = status["File"], status["Position"]
            ts_ms = int(time.time() * 1000)
            for table in TABLES:
                self.control(table)
                cur.execute(f"SELECT * FROM `{table}`")
                for row in cur.fetchall():
                    source = self.source(table, ts_ms, log_file, log_pos, 0, "true")
                    self.emit(table, "r", None, row, source, None)
                    self.counts["snapshot_rows"] += 1
            c.commit()
        return log_file, log_pos

    def source(self, table, ts_ms, log_file, pos, row, snapshot) -> dict:
        return {
            "version": "2.7.3.Final",
            "connector": "mariadb",
            "name": "local",
            "ts_ms": ts_ms,
            "snapshot": snapshot,
            "db": self.args.db,
            "table": table,
            "server_id": 1,
            "file": log_file,
            "pos": pos,
            "row": row,
        }

    def stream(self, log_file: str, log_pos: int) -> None:
        conn = {
            "host": os.environ.get("MARIADB_HOST", "127.0.0.1"),
            "port": int(os.environ.get("MARIADB_PORT", "3307")),
            "user": os.environ.get("MARIADB_USER", "root"),
            "passwd": os.environ.get("MARIADB_PASSWORD", ""),
        }
        reader = BinLogStreamReader(
            connection_settings=conn,
            server_id=100 + os.getpid() % 10000,
            log_file=log_file,
            log_pos=log_pos,
            resume_stream=True,
            blocking=True,
            only_schemas=[self.args.db],
            only_events=[WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent, XidEvent],
            is_mariadb=True,
        )
        # DMS's transaction-id: the source's transactions numbered in commit order (an XID event
        # ends each one, after its rows).
        transaction = 1
        deadline = time.monotonic() + self.args.timeout
        try:
            for event in reader:
                if time.monotonic() > deadline:
                    raise SystemExit(f"capture: no stop marker within {self.args.timeout} s")
                if isinstance(event, XidEvent):
                    transaction += 1
                    continue
                if event.table == CONTROL_TABLE:
                    return
                # The rows event's own position: where it starts in the binlog.
                pos = event.packet.log_pos - event.event_size
                source_file = reader.log_file
                for i, row in enumerate(event.rows):
                    source = self.source(event.table, event.timestamp * 1000, source_file, pos, i, "false")
                    if isinstance(event, WriteRowsEvent):
                        self.emit(event.table, "c", None, row["values"], source, transaction)
                    elif isinstance(event, UpdateRowsEvent):
                        self.emit(event.table, "u", row["before_values"], row["after_values"], source, transaction)
                    else:
                        self.emit(event.table, "d", row["values"], None, source, transaction)
                    self.counts["changes"] += 1
                    self.maybe_redeliver()
        finally:
            reader.close()


def cmd_capture(args) -> None:
    started = time.monotonic()
    cap = Capture(args)
    if args.wait_for and not wait_for_file(args.wait_for, args.timeout):
        raise SystemExit(f"capture: {args.wait_for} did not appear")
    log_file, log_pos = cap.snapshot()
    cap.stream(log_file, log_pos)
    for stream in cap.pending:
        cap.flush(stream)
    cap.counts["seconds"] = round(time.monotonic() - started, 2)
    print(json.dumps(cap.counts))


def wait_for_file(path: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---------------------------------------------------------------- dump


def snowflake_text(v):
    """A value as the Snowflake SQL API returns it for the target column's type: NUMBER(38,9)
    with all nine decimals, TIMESTAMP_NTZ as seconds.nanoseconds since the epoch."""
    if v is None:
        return None
    if isinstance(v, decimal.Decimal):
        return format(v.quantize(decimal.Decimal("1e-9")), "f")
    if isinstance(v, datetime.datetime):
        delta = v - EPOCH
        ns = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
        secs, frac = divmod(ns, 1_000_000_000)
        return f"{secs}.{frac:09d}"
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return str(v)


def cmd_dump(args) -> None:
    with connect(args.db) as c, c.cursor() as cur:
        cur.execute(f"SELECT * FROM `{args.table}`")
        for row in cur.fetchall():
            print(json.dumps([snowflake_text(v) for v in row], ensure_ascii=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("schema")
    s.add_argument("--db", required=True)
    w = sub.add_parser("workload")
    w.add_argument("--db", required=True)
    w.add_argument("--ops", type=int, default=20000)
    w.add_argument("--seed", type=int, default=7)
    w.add_argument("--seed-rows", type=int, default=500, help="rows inserted before the snapshot")
    w.add_argument("--after-snapshot", help="file written once the seed rows are committed")
    c = sub.add_parser("capture")
    c.add_argument("--db", required=True)
    c.add_argument("--dms-stream", required=True)
    c.add_argument("--debezium-stream", required=True)
    c.add_argument("--seed", type=int, default=7)
    c.add_argument("--redeliver-every", type=int, default=0)
    c.add_argument("--wait-for", help="start the snapshot once this file exists")
    c.add_argument("--timeout", type=float, default=600)
    d = sub.add_parser("dump")
    d.add_argument("--db", required=True)
    d.add_argument("--table", required=True)
    args = p.parse_args()
    {"schema": cmd_schema, "workload": cmd_workload, "capture": cmd_capture, "dump": cmd_dump}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
