"""The local Snowflake refuses what Snowflake refuses (local/strict_sql.py), over the SQL API.

Each refusal is asserted as the HTTP 422 body Snowflake's SQL API answers: its `code`, `sqlState`
and message; each has a positive twin showing that valid statements still run.
Run: .venv/bin/python -m pytest local/tests/test_strict_sql.py -q
"""

from __future__ import annotations

import gzip
import json

import pytest

# the stack, client and per-test database of the service's own tests (imported, not duplicated)
from test_snowflake_service import (  # noqa: F401
    Client,
    _reset,
    _setup_stage,
    bucket,
    client,
    db,
    spec,
    stack,
)


def refused(client: Client, statement: str, code: str, sql_state: str, message: str, **kw) -> str:
    """Submits `statement`, asserts Snowflake's refusal and returns the message."""
    r = client.submit(statement, **kw)
    assert r.status_code == 422, r.text
    body = r.json()
    assert (body["code"], body["sqlState"]) == (code, sql_state), body
    assert body["message"].startswith(message), body["message"]
    return body["message"]


def text(value: str) -> dict:
    return {"1": {"type": "TEXT", "value": value}}


def rows(client: Client, sql: str, **kw) -> list[list]:
    return client.run(sql, **kw)["data"]


# ------------------------------------------------------------------------------------------------
# MERGE: duplicate join behavior


def merge_sql(table: str = "M") -> str:
    """The shape of the upsert's MERGE (functions/upsert/src/merge.rs and row.rs): rows as one bound JSON array."""
    return (
        f'MERGE INTO {table} AS t USING (SELECT value:"k"::NUMBER(38,0) AS "K", value:"v"::VARCHAR AS "V", '
        'value:"d"::BOOLEAN AS "__DELETE" FROM (SELECT PARSE_JSON(?, \'d\') AS J) AS SRC, '
        'LATERAL FLATTEN(INPUT => SRC.J)) AS s ON t."K" = s."K" '
        'WHEN MATCHED AND s."__DELETE" THEN DELETE '
        'WHEN MATCHED AND NOT s."__DELETE" AND s."V" <> \'skip\' THEN UPDATE SET t."V" = s."V" '
        'WHEN NOT MATCHED AND NOT s."__DELETE" THEN INSERT ("K", "V") VALUES (s."K", s."V")'
    )


@pytest.fixture()
def merge_table(client, db):
    client.run('CREATE TABLE M ("K" NUMBER(38,0), "V" VARCHAR)', **db)
    client.run("INSERT INTO M VALUES (1, 'one'), (2, 'two')", **db)
    return db


def source(*rows_: tuple) -> dict:
    return text(json.dumps([{"k": k, "v": v, "d": d} for k, v, d in rows_]))


def test_merge_two_source_rows_updating_one_target_row_is_refused_and_changes_nothing(client, merge_table):
    db = merge_table
    before = rows(client, "SELECT K, V FROM M ORDER BY K", **db)
    message = refused(
        client, merge_sql(), "100090", "42P18", "Duplicate row detected during DML action\nRow Values: [",
        bindings=source((1, "a", False), (1, "b", False), (3, "new", False)), **db,
    )
    assert message == 'Duplicate row detected during DML action\nRow Values: [1, "one"]'
    # atomic: neither the update of 1 nor the insert of 3 happened
    assert rows(client, "SELECT K, V FROM M ORDER BY K", **db) == before


def test_merge_one_source_row_updating_and_another_deleting_is_refused(client, merge_table):
    db = merge_table
    refused(client, merge_sql(), "100090", "42P18", "Duplicate row detected during DML action",
            bindings=source((2, "x", True), (2, "y", False)), **db)
    assert rows(client, "SELECT K, V FROM M ORDER BY K", **db) == [["1", "one"], ["2", "two"]]


def test_merge_duplicates_that_are_deterministic_succeed(client, merge_table):
    db = merge_table
    # two source rows with the same NEW key: each is inserted
    out = client.run(merge_sql(), bindings=source((7, "a", False), (7, "b", False)), **db)
    assert out["stats"]["numRowsInserted"] == 2
    assert sorted(rows(client, "SELECT V FROM M WHERE K = 7", **db)) == [["a"], ["b"]]
    # two source rows that only delete one target row
    client.run(merge_sql(), bindings=source((1, "x", True), (1, "y", True)), **db)
    assert rows(client, "SELECT COUNT(*) FROM M WHERE K = 1", **db) == [["0"]]
    # two source rows joining one target row, only one of which takes a WHEN MATCHED clause
    out = client.run(merge_sql(), bindings=source((2, "skip", False), (2, "kept", False)), **db)
    assert out["stats"]["numRowsUpdated"] == 1
    assert rows(client, "SELECT V FROM M WHERE K = 2", **db) == [["kept"]]
    # one source row joining two target rows (the target has a repeated key) updates both
    out = client.run(merge_sql(), bindings=source((7, "both", False)), **db)
    assert out["stats"]["numRowsUpdated"] == 2
    assert rows(client, "SELECT V FROM M WHERE K = 7", **db) == [["both"], ["both"]]


def test_merge_of_a_thousand_rows_with_one_duplicate_key_is_refused(client, merge_table):
    db = merge_table
    batch = [(k, f"v{k}", False) for k in range(1, 1001)]
    client.run(merge_sql(), bindings=source(*batch), **db)
    assert rows(client, "SELECT COUNT(*) FROM M", **db) == [["1000"]]
    refused(client, merge_sql(), "100090", "42P18", "Duplicate row detected during DML action",
            bindings=source(*batch, (500, "again", False)), **db)
    assert rows(client, "SELECT V FROM M WHERE K = 500", **db) == [["v500"]]


# ------------------------------------------------------------------------------------------------
# PARSE_JSON


def test_parse_json_refuses_a_repeated_key_by_default(client, db):
    # the example of https://docs.snowflake.com/en/sql-reference/functions/parse_json
    message = refused(client, """SELECT PARSE_JSON('{ "a" : "123", "b" : "456", "a": "789"} ')""",
                      "100069", "22P02", "Error parsing JSON: duplicate object attribute", **db)
    assert message == 'Error parsing JSON: duplicate object attribute "a", pos 31'
    # 's' (strict) is the default; nested objects, inside arrays, and bound text too
    refused(client, """SELECT PARSE_JSON('{"a": {"b": 1, "b": 2}}', 's')""", "100069", "22P02",
            'Error parsing JSON: duplicate object attribute "b"', **db)
    refused(client, "SELECT PARSE_JSON(?)", "100069", "22P02", 'Error parsing JSON: duplicate object attribute "q"',
            bindings=text('[{"q": 1}, {"q": 1, "q": 2}]'), **db)
    # an INSERT that refuses writes nothing
    client.run("CREATE TABLE V (ID NUMBER, J VARIANT)", **db)
    refused(client, "INSERT INTO V SELECT 1, PARSE_JSON(?)", "100069", "22P02", "Error parsing JSON:",
            bindings=text('{"x": 1, "x": 1}'), **db)
    assert rows(client, "SELECT COUNT(*) FROM V", **db) == [["0"]]


def test_parse_json_refuses_invalid_text(client, db):
    refused(client, "SELECT PARSE_JSON('{bad')", "100069", "22P02", "Error parsing JSON: ", **db)
    refused(client, "SELECT PARSE_JSON(?)", "100069", "22P02", "Error parsing JSON: ", bindings=text('{"a": '), **db)
    client.run("CREATE TABLE S (T VARCHAR)", **db)
    client.run("""INSERT INTO S VALUES ('{"ok": 1}'), ('[1, 2')""", **db)
    refused(client, "SELECT PARSE_JSON(T) FROM S", "100069", "22P02", "Error parsing JSON: ", **db)


def test_parse_json_d_keeps_the_last_value_of_a_repeated_key(client, db):
    out = rows(client, """SELECT PARSE_JSON('{"a": 1, "b": {"c": 1, "c": 2}, "a": 3}', 'd') AS J""", **db)
    assert json.loads(out[0][0]) == {"a": 3, "b": {"c": 2}}
    out = rows(client, "SELECT PARSE_JSON(?, 'd'):x::NUMBER(10,2) AS X", bindings=text('{"x": 1, "x": 12.345}'), **db)
    assert out == [["12.35"]]
    # valid text without repeated keys reads the same either way; blank text is NULL
    out = rows(client, """SELECT PARSE_JSON('{"a": [1, 2.50]}'), PARSE_JSON('{"a": [1, 2.50]}', 'd'), """
                       "PARSE_JSON(' ')", **db)
    assert out[0][0] == out[0][1] and out[0][2] is None
    # TRY_PARSE_JSON answers NULL where PARSE_JSON refuses
    assert rows(client, """SELECT TRY_PARSE_JSON('{"a": 1, "a": 2}')""", **db) == [[None]]


def test_parse_json_of_a_column_refuses_a_repeated_key(client, db):
    client.run("CREATE TABLE S (T VARCHAR)", **db)
    client.run("""INSERT INTO S VALUES ('{"ok": 1}'), ('{"n": {"k": 1, "k": 2}}')""", **db)
    refused(client, "SELECT PARSE_JSON(T) FROM S", "100069", "22P02",
            'Error parsing JSON: duplicate object attribute "k", pos 18', **db)
    assert rows(client, "SELECT PARSE_JSON(T):ok FROM S WHERE T LIKE '%ok%'", **db) == [["1"]]


# ------------------------------------------------------------------------------------------------
# COPY of JSON files: ALLOW_DUPLICATE


def test_copy_json_with_a_repeated_key_fails_unless_allow_duplicate(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)  # NDJSON_FMT: TYPE = JSON, ALLOW_DUPLICATE left at FALSE
    client.run("CREATE FILE FORMAT NDJSON_DUP_FMT TYPE = JSON ALLOW_DUPLICATE = TRUE COMPRESSION = AUTO", **db)
    client.run("CREATE TABLE RAW_EVENTS (PAYLOAD VARIANT)", **db)
    s3.put_object(Bucket=name, Key="raw/d/good.ndjson.gz", Body=gzip.compress(b'{"id": 1}\n'))
    s3.put_object(Bucket=name, Key="raw/d/dup.ndjson.gz",
                  Body=gzip.compress(b'{"id": 2, "p": {"t": 1}}\n{"id": 3, "p": {"t": 1, "t": 2}, "id": 4}\n'))
    copy = ("COPY INTO RAW_EVENTS FROM @RAW_STAGE/d/ FILES = ('good.ndjson.gz', 'dup.ndjson.gz') "
            "FILE_FORMAT = (FORMAT_NAME = '{fmt}') ON_ERROR = ABORT_STATEMENT")
    message = refused(client, copy.format(fmt="NDJSON_FMT"), "100069", "22P02",
                      'Error parsing JSON: duplicate object attribute "t", pos 27', **db)
    assert f"File 's3://{name}/raw/d/dup.ndjson.gz', line 2" in message
    assert rows(client, "SELECT COUNT(*) FROM RAW_EVENTS", **db) == [["0"]]  # the statement loaded nothing
    out = client.run(copy.format(fmt="NDJSON_DUP_FMT"), **db)
    assert [(r[1], r[3]) for r in out["data"]] == [("LOADED", "1"), ("LOADED", "2")]
    got = [json.loads(r[0]) for r in rows(client, "SELECT PAYLOAD FROM RAW_EVENTS", **db)]
    assert sorted(got, key=lambda p: p["id"]) == [{"id": 1}, {"id": 2, "p": {"t": 1}}, {"id": 4, "p": {"t": 2}}]


def test_copy_allow_duplicate_given_in_the_copy_statement(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE RAW_EVENTS (PAYLOAD VARIANT)", **db)
    s3.put_object(Bucket=name, Key="raw/e/dup.ndjson.gz", Body=gzip.compress(b'{"a": 1, "a": 2}\n'))
    client.run("COPY INTO RAW_EVENTS FROM @RAW_STAGE/e/ FILES = ('dup.ndjson.gz') "
               "FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT' ALLOW_DUPLICATE = TRUE) ON_ERROR = ABORT_STATEMENT", **db)
    assert [json.loads(r[0]) for r in rows(client, "SELECT PAYLOAD FROM RAW_EVENTS", **db)] == [{"a": 2}]


# ------------------------------------------------------------------------------------------------
# NUMBER(p,s)


def test_number_out_of_range_is_refused(client, db):
    refused(client, "SELECT '123.45'::NUMBER(4,2)", "100039", "22003", "Numeric value '123.45' is out of range", **db)
    refused(client, "SELECT '100000000000000000000000000000000000000'::NUMBER(38,0)", "100039", "22003",
            "Numeric value '100000000000000000000000000000000000000' is out of range", **db)
    # a number (not text) too wide for its target
    refused(client, "SELECT 123.45::NUMBER(4,2)", "100046", "22003",
            "Number out of representable range: type FIXED[SB2](4,2), value 123.45", **db)
    refused(client, "SELECT 100000000000000000000000000000000000000::NUMBER", "100046", "22003",
            "Number out of representable range: type FIXED[SB16](38,0)", **db)
    # rounding past the precision: 99.999 rounds to 100.00
    refused(client, "SELECT '99.999'::NUMBER(4,2)", "100039", "22003", "Numeric value '99.999' is out of range", **db)
    # text that is no number at all
    refused(client, "SELECT 'abc'::NUMBER(4,2)", "100038", "22018", "Numeric value 'abc' is not recognized", **db)
    # into a column, bound
    client.run("CREATE TABLE N (A NUMBER(4,2))", **db)
    refused(client, "INSERT INTO N VALUES (?)", "100046", "22003", "Number out of representable range",
            bindings={"1": {"type": "FIXED", "value": "123.45"}}, **db)
    assert rows(client, "SELECT COUNT(*) FROM N", **db) == [["0"]]


def test_number_out_of_range_in_a_merge_source_changes_nothing(client, db):
    client.run("CREATE TABLE P (K NUMBER, AMOUNT NUMBER(10,2))", **db)
    client.run("INSERT INTO P VALUES (1, 1.50)", **db)
    merge = ('MERGE INTO P AS t USING (SELECT value:"c0"::NUMBER(38,0) AS K, value:"c1"::NUMBER(10,2) AS AMOUNT '
             "FROM (SELECT PARSE_JSON(?) AS J) AS SRC, LATERAL FLATTEN(INPUT => SRC.J)) AS s ON t.K = s.K "
             "WHEN MATCHED THEN UPDATE SET t.AMOUNT = s.AMOUNT "
             "WHEN NOT MATCHED THEN INSERT (K, AMOUNT) VALUES (s.K, s.AMOUNT)")
    refused(client, merge, "100039", "22003", "Numeric value '123456789012.5' is out of range",
            bindings=text('[{"c0": 1, "c1": 2.5}, {"c0": 2, "c1": 123456789012.5}]'), **db)
    assert rows(client, "SELECT K, AMOUNT FROM P", **db) == [["1", "1.50"]]
    client.run(merge, bindings=text('[{"c0": 1, "c1": 2.555}, {"c0": 2, "c1": 99999999.99}]'), **db)
    assert rows(client, "SELECT K, AMOUNT FROM P ORDER BY K", **db) == [["1", "2.56"], ["2", "99999999.99"]]


def test_numbers_in_range_still_load(client, db):
    out = rows(client, "SELECT '12.345'::NUMBER(4,2), '-99.99'::NUMBER(4,2), "
                       "'99999999999999999999999999999999999999'::NUMBER(38,0)", **db)
    assert out == [["12.35", "-99.99", "99999999999999999999999999999999999999"]]
    # NUMBER and INT are NUMBER(38,0): 38 digits, not DuckDB's BIGINT
    client.run("CREATE TABLE W (ID NUMBER, I INT)", **db)
    client.run("INSERT INTO W VALUES (?, ?)", bindings={"1": {"type": "FIXED", "value": "12345678901234567890123"},
                                                      "2": {"type": "FIXED", "value": "-" + "9" * 38}}, **db)
    out = client.run("SELECT ID, I, ID + 1 FROM W", **db)
    assert out["data"] == [["12345678901234567890123", "-" + "9" * 38, "12345678901234567890124"]]
    assert [(c["type"], c["precision"], c["scale"]) for c in out["resultSetMetaData"]["rowType"][:2]] == [
        ("FIXED", 38, 0), ("FIXED", 38, 0)]


# ------------------------------------------------------------------------------------------------
# DATE / TIMESTAMP: years 1..9999


def test_dates_and_timestamps_outside_years_1_to_9999_are_refused(client, db):
    refused(client, "SELECT '10000-01-01'::TIMESTAMP_NTZ", "100035", "22007",
            "Timestamp '10000-01-01' is not recognized", **db)
    refused(client, "SELECT '10000-01-01 00:00:00'::TIMESTAMP_TZ", "100035", "22007", "Timestamp '10000-01-01", **db)
    refused(client, "SELECT '10000-01-01'::DATE", "100040", "22007", "Date '10000-01-01' is not recognized", **db)
    refused(client, "SELECT TO_DATE('0000-12-31')", "100040", "22007", "Date '0000-12-31' is not recognized", **db)
    refused(client, "SELECT CAST(? AS TIMESTAMP_NTZ)", "100035", "22007", "Timestamp '12024-01-01' is not recognized",
            bindings=text("12024-01-01"), **db)
    # a bound TIMESTAMP / DATE value (nanoseconds / milliseconds since the epoch) out of range
    refused(client, "SELECT ?", "100035", "22007", "Timestamp '253402300800000000000' is not recognized",
            bindings={"1": {"type": "TIMESTAMP_NTZ", "value": "253402300800000000000"}}, **db)
    refused(client, "SELECT ?", "100040", "22007", "Date '253402300800000' is not recognized",
            bindings={"1": {"type": "DATE", "value": "253402300800000"}}, **db)
    # TRY_CAST answers NULL instead
    assert rows(client, "SELECT TRY_CAST('10000-01-01' AS DATE)", **db) == [[None]]


def test_timestamp_out_of_range_in_a_merge_source_changes_nothing(client, db):
    client.run("CREATE TABLE E (K NUMBER, TS TIMESTAMP_NTZ)", **db)
    merge = ('MERGE INTO E AS t USING (SELECT value:"k"::NUMBER AS K, value:"a"::TIMESTAMP_NTZ AS TS '
             "FROM (SELECT PARSE_JSON(?, 'd') AS J) AS SRC, LATERAL FLATTEN(INPUT => SRC.J)) AS s ON t.K = s.K "
             "WHEN MATCHED THEN UPDATE SET t.TS = s.TS WHEN NOT MATCHED THEN INSERT (K, TS) VALUES (s.K, s.TS)")
    refused(client, merge, "100035", "22007", "Timestamp '10000-01-01T00:00:00' is not recognized",
            bindings=text('[{"k": 1, "a": "2024-01-02T03:04:05Z"}, {"k": 2, "a": "10000-01-01T00:00:00"}]'), **db)
    assert rows(client, "SELECT COUNT(*) FROM E", **db) == [["0"]]
    client.run(merge, bindings=text('[{"k": 1, "a": "9999-12-31T23:59:59.999Z"}, {"k": 2, "a": "0001-01-01"}]'), **db)
    assert rows(client, "SELECT K, TS FROM E ORDER BY K", **db) == [
        ["1", "253402300799.999000000"], ["2", "-62135596800.000000000"]]


def test_dates_and_timestamps_in_range_still_work(client, db):
    out = client.run("SELECT '9999-12-31 23:59:59.999999'::TIMESTAMP_NTZ, '0001-01-01'::DATE, "
                     "'2024-01-02'::DATE AS D, TO_TIMESTAMP('2024-01-02 03:04:05'), CAST(NULL AS DATE)", **db)
    assert out["data"] == [["253402300799.999999000", "-719162", "19724", "1704164645.000000000", None]]
    assert [c["type"] for c in out["resultSetMetaData"]["rowType"]] == [
        "TIMESTAMP_NTZ", "DATE", "DATE", "TIMESTAMP_NTZ", "DATE"]
    out = rows(client, "SELECT ?, ?", bindings={"1": {"type": "TIMESTAMP_NTZ", "value": "1700000000123456000"},
                                                "2": {"type": "DATE", "value": "1704153600000"}}, **db)
    assert out == [["1700000000.123456000", "19724"]]


def test_a_column_the_table_does_not_have_is_an_invalid_identifier(client, db):
    """Snowflake: `000904 (42000): SQL compilation error: ... invalid identifier '"NOPE"'`, for a
    column read, inserted or updated (the upsert reads its columns again on this code)."""
    client.run('CREATE TABLE C (ID NUMBER, NAME VARCHAR)', **db)
    for sql in ['SELECT "NOPE" FROM C', 'INSERT INTO C ("ID", "NOPE") VALUES (1, 2)',
                'UPDATE C SET "NOPE" = 1',
                'MERGE INTO C AS t USING (SELECT 1 AS ID, 2 AS NOPE) AS s ON t.ID = s.ID '
                'WHEN MATCHED THEN UPDATE SET t."NOPE" = s.NOPE WHEN NOT MATCHED THEN INSERT (ID, "NOPE") VALUES (s.ID, s.NOPE)']:
        message = refused(client, sql, "000904", "42000", "SQL compilation error", **db)
        assert "invalid identifier '\"NOPE\"'" in message, message
    assert rows(client, 'SELECT "NAME" FROM C', **db) == []
