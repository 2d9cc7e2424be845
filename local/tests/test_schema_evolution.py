"""Table schema evolution and COPY ... MATCH_BY_COLUMN_NAME in the local Snowflake (local/schema_evolution.py),
over HTTP. Each test names the rule it holds the stand-in to; the module docstring there cites the pages."""

from __future__ import annotations

import gzip
import json

from test_snowflake_service import _reset, _setup_stage, bucket, client, db, spec, stack  # noqa: F401


def _put(s3, name: str, key: str, records: list[dict]) -> None:
    body = "\n".join(json.dumps(r) for r in records).encode() + b"\n"
    s3.put_object(Bucket=name, Key=f"raw/{key}", Body=gzip.compress(body))


def _copy(files: list[str], extra: str = "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE", table: str = "T") -> str:
    listed = ", ".join(f"'{f}'" for f in files)
    return (f"COPY INTO {table} FROM @RAW_STAGE/ FILES = ({listed}) FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') "
            f"{extra} ON_ERROR = ABORT_STATEMENT")


def _columns(client, db, table: str = "T") -> dict[str, tuple[str, str, str | None]]:
    rows = client.run("SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, NUMERIC_SCALE FROM INFORMATION_SCHEMA.COLUMNS "
                      f"WHERE TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION", **db)["data"]
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _error(client, db, sql: str) -> dict:
    r = client.submit(sql, **db)
    assert r.status_code == 422, r.text
    return r.json()


def test_enable_schema_evolution_is_a_table_parameter_show_tables_reports(client, db):
    client.run("CREATE TABLE T (ID NUMBER) ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    client.run("CREATE TABLE U (ID NUMBER)", **db)

    def flags() -> dict[str, str]:
        out = client.run("SHOW TABLES", **db)
        names = [c["name"] for c in out["resultSetMetaData"]["rowType"]]
        i, f = names.index("name"), names.index("enable_schema_evolution")
        return {r[i]: r[f] for r in out["data"]}

    assert flags() == {"T": "Y", "U": "N"}
    client.run("ALTER TABLE T SET ENABLE_SCHEMA_EVOLUTION = FALSE", **db)
    client.run("ALTER TABLE U SET ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    assert flags() == {"T": "N", "U": "Y"}
    client.run("CREATE OR REPLACE TABLE U (ID NUMBER)", **db)  # a new table, without the parameter
    assert flags() == {"T": "N", "U": "N"}
    assert _error(client, db, "ALTER TABLE NOPE SET ENABLE_SCHEMA_EVOLUTION = TRUE")["code"] == "002003"


def test_copy_match_by_name_evolves_the_table(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE T (ID NUMBER NOT NULL, NAME VARCHAR) ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    _put(s3, name, "a.ndjson.gz", [{"id": 1, "Name": "a"}])
    out = client.run(_copy(["a.ndjson.gz"]), **db)
    assert [(r[1], r[3]) for r in out["data"]] == [("LOADED", "1")]
    assert list(_columns(client, db)) == ["ID", "NAME"]
    _put(s3, name, "b.ndjson.gz", [
        {"ID": 2, "name": "b", "temp": 21.5, "count": 3, "ok": True, "tags": ["x"], "obj": {"a": 1}, "label": "z"},
        {"name": "c", "temp": 7.25, "count": 4},
    ])
    out = client.run(_copy(["b.ndjson.gz"]), **db)
    assert [(r[1], r[3]) for r in out["data"]] == [("LOADED", "2")]
    cols = _columns(client, db)
    assert cols == {
        "ID": ("NUMBER", "YES", "0"),  # NOT NULL dropped: a record lacks it
        "NAME": ("TEXT", "YES", None),
        "TEMP": ("NUMBER", "YES", "2"),
        "COUNT": ("NUMBER", "YES", "0"),
        "OK": ("BOOLEAN", "YES", None),
        "TAGS": ("VARIANT", "YES", None),
        "OBJ": ("VARIANT", "YES", None),
        "LABEL": ("TEXT", "YES", None),
    }
    described = {r[0]: r[1] for r in client.run("DESCRIBE TABLE T", **db)["data"]}
    assert described["TEMP"] == "NUMBER(38,2)" and described["COUNT"] == "NUMBER(38,0)"
    rows = client.run("SELECT ID, NAME, TEMP, COUNT, OK, TAGS[0]::STRING, OBJ:a::NUMBER, LABEL FROM T ORDER BY NAME",
                      **db)["data"]
    assert rows == [["1", "a", None, None, None, None, None, None],
                    ["2", "b", "21.50", "3", "true", "x", "1", "z"],
                    [None, "c", "7.25", "4", None, None, None, None]]


def test_without_the_parameter_new_fields_are_dropped_and_not_null_holds(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE T (ID NUMBER NOT NULL, NAME VARCHAR)", **db)
    _put(s3, name, "a.ndjson.gz", [{"id": 1, "name": "a", "extra": 5}])
    client.run(_copy(["a.ndjson.gz"]), **db)
    assert list(_columns(client, db)) == ["ID", "NAME"]
    assert client.run("SELECT ID, NAME FROM T", **db)["data"] == [["1", "a"]]
    _put(s3, name, "b.ndjson.gz", [{"name": "b"}])
    err = _error(client, db, _copy(["b.ndjson.gz"]))
    assert (err["code"], err["message"]) == ("100072", "NULL result in a non-nullable column")
    # a table with the parameter but a COPY without MATCH_BY_COLUMN_NAME does not evolve either
    client.run("CREATE TABLE V (RECORD VARIANT) ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    client.run(_copy(["a.ndjson.gz"], extra="", table="V"), **db)
    assert list(_columns(client, db, "V")) == ["RECORD"]


def test_case_sensitive_matches_exact_names_and_adds_them_as_written(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE T (ID NUMBER, NAME VARCHAR)", **db)
    _put(s3, name, "a.ndjson.gz", [{"ID": 1, "name": "lower"}])
    client.run(_copy(["a.ndjson.gz"], extra="MATCH_BY_COLUMN_NAME = CASE_SENSITIVE"), **db)
    assert client.run("SELECT ID, NAME FROM T", **db)["data"] == [["1", None]]
    client.run("ALTER TABLE T SET ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    _put(s3, name, "b.ndjson.gz", [{"ID": 2, "Score": 5}])
    client.run(_copy(["b.ndjson.gz"], extra="MATCH_BY_COLUMN_NAME = CASE_SENSITIVE"), **db)
    assert list(_columns(client, db)) == ["ID", "NAME", "Score"]
    assert client.run('SELECT ID, "Score" FROM T ORDER BY ID', **db)["data"] == [["1", None], ["2", "5"]]


def test_at_most_100_new_columns_per_copy(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE T (ID NUMBER) ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    _put(s3, name, "wide.ndjson.gz", [{"id": 1, **{f"f{i}": i for i in range(101)}}])
    err = _error(client, db, _copy(["wide.ndjson.gz"]))
    assert err["code"] == "002262" and "101 columns" in err["message"]
    assert list(_columns(client, db)) == ["ID"]
    assert client.run("SELECT COUNT(*) FROM T", **db)["data"] == [["0"]]
    _put(s3, name, "ok.ndjson.gz", [{"id": 1, **{f"f{i}": i for i in range(100)}}])
    client.run(_copy(["ok.ndjson.gz"]), **db)
    assert len(_columns(client, db)) == 101


def test_include_metadata_only_with_match_by_name_into_existing_columns(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE T (ID NUMBER, SOURCE_FILE VARCHAR, SOURCE_ROW NUMBER) "
               "ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    _put(s3, name, "d/a.ndjson.gz", [{"id": 1}, {"id": 2, "v": "x"}])
    meta = "INCLUDE_METADATA = (SOURCE_FILE = METADATA$FILENAME, SOURCE_ROW = METADATA$FILE_ROW_NUMBER)"
    client.run(_copy(["d/a.ndjson.gz"], extra=f"MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE {meta}"), **db)
    assert client.run("SELECT ID, SOURCE_FILE, SOURCE_ROW, V FROM T ORDER BY ID", **db)["data"] == [
        ["1", "d/a.ndjson.gz", "1", None], ["2", "d/a.ndjson.gz", "2", "x"]]
    assert "INCLUDE_METADATA" in _error(client, db, _copy(["d/a.ndjson.gz"], extra=meta))["message"]
    missing = "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE INCLUDE_METADATA = (LOADED_AT = METADATA$START_SCAN_TIME)"
    assert _error(client, db, _copy(["d/a.ndjson.gz"], extra=missing))["code"] == "000904"
    transform = ("COPY INTO T (ID) FROM (SELECT $1:id FROM @RAW_STAGE/) FILES = ('d/a.ndjson.gz') "
                 "FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE")
    assert "not supported with copy transform" in _error(client, db, transform)["message"]


def test_a_value_that_does_not_fit_its_evolved_column_aborts_the_copy(client, db, bucket):
    s3, name = bucket
    _setup_stage(client, db, name)
    client.run("CREATE TABLE T (ID NUMBER) ENABLE_SCHEMA_EVOLUTION = TRUE", **db)
    _put(s3, name, "a.ndjson.gz", [{"id": 1, "level": 3}])
    client.run(_copy(["a.ndjson.gz"]), **db)
    _put(s3, name, "b.ndjson.gz", [{"id": 2, "level": 4, "new": "n"}, {"id": 3, "level": "high"}])
    err = _error(client, db, _copy(["b.ndjson.gz"]))
    assert (err["code"], err["message"]) == ("100038", "Numeric value 'high' is not recognized")
    assert list(_columns(client, db)) == ["ID", "LEVEL"]  # nothing evolved, nothing loaded
    assert client.run("SELECT COUNT(*) FROM T", **db)["data"] == [["1"]]


def test_add_column_of_an_existing_column(client, db):
    client.run("CREATE TABLE T (ID NUMBER, NAME VARCHAR)", **db)
    for sql in ("ALTER TABLE T ADD COLUMN NAME VARCHAR", "ALTER TABLE T ADD COLUMN name NUMBER"):
        err = _error(client, db, sql)
        assert (err["code"], err["sqlState"], err["message"]) == (
            "001430", "42601", "SQL compilation error:\ncolumn 'NAME' already exists")
    client.run("ALTER TABLE T ADD COLUMN IF NOT EXISTS NAME VARCHAR", **db)
    client.run("ALTER TABLE T ADD COLUMN IF NOT EXISTS SCORE NUMBER(10,2)", **db)
    assert _columns(client, db) == {"ID": ("NUMBER", "YES", "0"), "NAME": ("TEXT", "YES", None),
                                    "SCORE": ("NUMBER", "YES", "2")}
