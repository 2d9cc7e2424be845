"""Table schema evolution and COPY ... MATCH_BY_COLUMN_NAME from JSON, as Snowflake does them, for
local/snowflake_service.py (fakesnow accepts ENABLE_SCHEMA_EVOLUTION and forgets it, cannot parse
ALTER TABLE ... SET ENABLE_SCHEMA_EVOLUTION, ignores MATCH_BY_COLUMN_NAME for JSON files, and refuses
INCLUDE_METADATA).

Each rule, with the page it follows:

- The table parameter ENABLE_SCHEMA_EVOLUTION (CREATE TABLE ... ENABLE_SCHEMA_EVOLUTION = TRUE, ALTER TABLE ...
  SET ENABLE_SCHEMA_EVOLUTION = TRUE | FALSE); SHOW TABLES reports it in its enable_schema_evolution column
  (DOC_EVOLUTION, DOC_SHOW_TABLES). A CREATE OR REPLACE without it makes a new table without it.
- A COPY evolves a table only when the table has ENABLE_SCHEMA_EVOLUTION = TRUE and the COPY uses
  MATCH_BY_COLUMN_NAME (DOC_EVOLUTION, "Loading data from files evolves the table columns when all of the
  following are true"); the third condition, EVOLVE SCHEMA or OWNERSHIP on the table, always holds here (the
  stand-in has one role, which owns everything it creates).
- Evolution adds a column per field no column matches, and drops NOT NULL from a column the loaded records
  lack (DOC_EVOLUTION: "Automatically dropping the NOT NULL constraint from columns that are missing in new
  data files"); at most 100 columns are added per COPY (DOC_EVOLUTION, usage notes; older translations of
  the page say 10). What Snowflake does past the cap is not documented: the stand-in fails the statement and
  adds nothing (stricter than a partial evolution), with its own error code and message.
- A new column's type is schema detection's type for the field's JSON values (DOC_INFER_SCHEMA,
  DOC_INFER_NUMBERS): integers NUMBER(38,0), decimals NUMBER(38,s) with s the largest scale seen, numbers
  in exponent notation REAL, booleans BOOLEAN, strings TEXT, objects and arrays VARIANT; a mix of numbers
  and strings is TEXT, any other mix (and a field that is only ever null) VARIANT.
- MATCH_BY_COLUMN_NAME = CASE_SENSITIVE | CASE_INSENSITIVE matches a record's top-level keys to columns;
  a column no key matches gets NULL (and fails a NOT NULL column: 100072 "NULL result in a non-nullable
  column"); a key no column matches is not loaded unless the table evolves (DOC_COPY, MATCH_BY_COLUMN_NAME).
  An added column is named as the key for CASE_SENSITIVE and as the key upper-cased for CASE_INSENSITIVE.
- MATCH_BY_COLUMN_NAME with a transform (COPY INTO t FROM (SELECT ...)) fails: "match_by_column_name is not
  supported with copy transform" (DOC_BCR_1514).
- INCLUDE_METADATA = (col = METADATA$FILENAME | METADATA$FILE_ROW_NUMBER | METADATA$START_SCAN_TIME |
  METADATA$FILE_LAST_MODIFIED, ...) only with MATCH_BY_COLUMN_NAME, into columns that already exist: evolution
  never adds them (DOC_COPY, INCLUDE_METADATA).
- A value that does not fit its column fails the COPY under ON_ERROR = ABORT_STATEMENT with the conversion
  error (100038 "Numeric value 'high' is not recognized", mapped by strict_sql); nothing is loaded or evolved
  (the statement is one transaction). Other ON_ERROR values are refused by fakesnow, as before.
- ALTER TABLE ... ADD COLUMN of an existing column fails with 001430 (42601) "SQL compilation error:\\ncolumn
  'X' already exists" (the message as Snowflake answers it, DOC_ADD_COLUMN_EXISTS); ADD COLUMN IF NOT EXISTS
  does nothing (DOC_ALTER_TABLE).

INFORMATION_SCHEMA.COLUMNS and DESCRIBE TABLE read DuckDB's catalog, so they show evolved columns as they are.
"""

from __future__ import annotations

import datetime
import decimal
import json
import re
import threading
import uuid
from typing import Any

import duckdb
import pyarrow as pa
import sqlglot
from sqlglot import exp

import fakesnow.copy_into as _copy_into
import load_history
import strict_sql
from fakesnow.cursor import FakeSnowflakeCursor

DOC_EVOLUTION = "https://docs.snowflake.com/en/user-guide/data-load-schema-evolution"
DOC_SHOW_TABLES = "https://docs.snowflake.com/en/sql-reference/sql/show-tables"  # enable_schema_evolution
DOC_COPY = "https://docs.snowflake.com/en/sql-reference/sql/copy-into-table"  # MATCH_BY_COLUMN_NAME, INCLUDE_METADATA
DOC_BCR_1514 = "https://docs.snowflake.com/en/release-notes/bcr-bundles/2024_02/bcr-1514"
DOC_INFER_SCHEMA = "https://docs.snowflake.com/en/sql-reference/functions/infer_schema"
DOC_INFER_NUMBERS = "https://docs.snowflake.com/en/release-notes/bcr-bundles/2026_08/bcr-2374"  # NUMBER(38, scale)
DOC_ALTER_TABLE = "https://docs.snowflake.com/en/sql-reference/sql/alter-table"  # ADD [ COLUMN ] [ IF NOT EXISTS ]
# Snowflake's answer to ADD COLUMN of an existing column, as quoted in a public bug report:
DOC_ADD_COLUMN_EXISTS = "https://github.com/MeltanoLabs/target-snowflake/pull/525"

MAX_NEW_COLUMNS = 100
PARAM = "ENABLE_SCHEMA_EVOLUTION"
METADATA_FIELDS = ("METADATA$FILENAME", "METADATA$FILE_ROW_NUMBER", "METADATA$START_SCAN_TIME",
                   "METADATA$FILE_LAST_MODIFIED")

_lock = threading.Lock()
_evolving: set[tuple[str, int]] = set()  # load_history.table_key of tables with ENABLE_SCHEMA_EVOLUTION = TRUE
_local = threading.local()  # prepared INSERTs of the COPY running on this thread, by file URL


def _compilation_error(message: str, code: str = "001003", state: str = "42000") -> strict_sql.StrictError:
    return strict_sql.StrictError(code, state, f"SQL compilation error:\n{message}")


def evolves(key: tuple[str, int] | None) -> bool:
    with _lock:
        return key is not None and key in _evolving


def _set_flag(key: tuple[str, int], on: bool) -> None:
    with _lock:
        (_evolving.add if on else _evolving.discard)(key)


def _flag_value(properties: exp.Expression | None) -> bool | None:
    """ENABLE_SCHEMA_EVOLUTION's value among a statement's properties; None when it is not there."""
    for prop in (properties.expressions if properties is not None else []):
        if isinstance(prop, exp.Property) and prop.name.upper() == PARAM:
            v = prop.args.get("value")
            return bool(v.this) if isinstance(v, exp.Boolean) else str(v.name if v else "").upper() == "TRUE"
    return None


# -- statements: CREATE / ALTER ... SET ENABLE_SCHEMA_EVOLUTION, SHOW TABLES --------------------------------


def _alter_set(cur: Any, alter: exp.Alter) -> bool | None:
    """The value an ALTER TABLE ... SET ENABLE_SCHEMA_EVOLUTION = ... sets; None for any other statement."""
    if alter.args.get("kind", "").upper() != "TABLE":
        return None
    actions = alter.args.get("actions") or []
    if len(actions) != 1 or not isinstance(actions[0], exp.AlterSet):
        return None
    props = [e for e in actions[0].expressions if isinstance(e, exp.Properties)]
    return _flag_value(props[0]) if len(props) == 1 and len(props[0].expressions) == 1 else None


def _key(cur: Any, table: exp.Table) -> tuple[str, int] | None:
    conn = cur._conn  # noqa: SLF001
    return load_history.table_key(cur._duck_conn, table, conn.database, table.db or conn.schema)  # noqa: SLF001


def _show_tables_flags(cur: Any) -> None:
    """fakesnow's SHOW TABLES says enable_schema_evolution 'N' for every table: say 'Y' where it is set."""
    table = cur._arrow_table  # noqa: SLF001
    if table is None or "enable_schema_evolution" not in table.column_names:
        return
    with _lock:
        oids = {oid for _, oid in _evolving}
    if not oids:
        return
    marks = ", ".join("?" * len(oids))
    on = {
        (str(d).upper(), str(s), str(n))
        for d, s, n in cur._duck_conn.execute(  # noqa: SLF001
            f"SELECT database_name, schema_name, table_name FROM duckdb_tables() WHERE table_oid IN ({marks})",
            list(oids),
        ).fetchall()
    }
    rows = zip(table["database_name"].to_pylist(), table["schema_name"].to_pylist(), table["name"].to_pylist(),
               strict=True)
    flags = pa.array(["Y" if (str(d).upper(), s, n) in on else "N" for d, s, n in rows], pa.string())
    i = table.column_names.index("enable_schema_evolution")
    cur._arrow_table = table.set_column(i, "enable_schema_evolution", flags)  # noqa: SLF001


def _execute(prev: Any, cur: Any, transformed: Any, params: Any) -> Any:
    if isinstance(transformed, exp.Copy):
        # compile-time refusals come before load metadata decides which files to load
        mbcn = _param(transformed, "MATCH_BY_COLUMN_NAME")
        mode = mbcn.expression.name.upper() if mbcn is not None else "NONE"
        metadata = _include_metadata(_param(transformed, "INCLUDE_METADATA"))
        _check_options(transformed, mode, metadata)
        table = _copy_into._extract_table(transformed.this)  # noqa: SLF001
        conn = cur._conn  # noqa: SLF001
        _check_metadata_columns(_columns(cur._duck_conn, str(table.catalog or conn.database),  # noqa: SLF001
                                         str(table.db or conn.schema), table.name), metadata)
    if isinstance(transformed, exp.Alter) and (on := _alter_set(cur, transformed)) is not None:
        table = transformed.this
        key = _key(cur, table)
        if key is None:
            raise strict_sql.StrictError("002003", "42S02",
                                         f"SQL compilation error:\nTable '{table.name}' does not exist or not authorized.")
        _set_flag(key, on)
        return prev(cur, sqlglot.parse_one("SELECT 'Statement executed successfully.' AS status"), None)
    result = prev(cur, transformed, params)
    if isinstance(transformed, exp.Create) and str(transformed.args.get("kind", "")).upper() == "TABLE":
        table = transformed.find(exp.Table)
        if table is not None and (key := _key(cur, table)) is not None:
            _set_flag(key, bool(_flag_value(transformed.args.get("properties"))))
    elif isinstance(transformed, exp.Select) and cur._arrow_table is not None:  # noqa: SLF001
        _show_tables_flags(cur)
    return result


# -- COPY ... MATCH_BY_COLUMN_NAME from JSON ------------------------------------------------------------------


def _param(expr: exp.Copy, name: str) -> exp.CopyParameter | None:
    for p in expr.args.get("params") or []:
        if isinstance(p.this, exp.Var) and p.this.name.upper() == name:
            return p
    return None


def _include_metadata(param: exp.CopyParameter | None) -> dict[str, str]:
    """INCLUDE_METADATA's column → METADATA$ field, checked."""
    if param is None:
        return {}
    pairs = param.expression.expressions if isinstance(param.expression, (exp.Tuple, exp.Paren)) else []
    if isinstance(param.expression, exp.Paren):
        pairs = [param.expression.this]
    out: dict[str, str] = {}
    for eq in pairs:
        if not isinstance(eq, exp.EQ):
            raise _compilation_error("invalid value for parameter 'INCLUDE_METADATA'")
        field = eq.expression.name.upper()
        if field not in METADATA_FIELDS:
            raise _compilation_error(f"invalid metadata field '{eq.expression.name}' in INCLUDE_METADATA")
        col = eq.this.this if isinstance(eq.this, exp.Column) else eq.this
        out[col.name if col.args.get("quoted") else col.name.upper()] = field
    return out


_Raw = strict_sql._RawNumber  # noqa: SLF001 - a JSON number kept as written
_INT_RE = re.compile(r"-?\d+")
_DUCK_TYPES = {"BOOLEAN": "BOOLEAN", "TEXT": "VARCHAR", "VARIANT": "JSON", "REAL": "DOUBLE"}


def _kind(v: Any) -> tuple[str, int]:
    """A JSON value's detected type and, for decimals, its scale."""
    if isinstance(v, bool):
        return "BOOLEAN", 0
    if isinstance(v, _Raw):
        text = str.__str__(v)
        if _INT_RE.fullmatch(text):
            return "NUMBER", 0
        if "e" in text.lower():
            return "REAL", 0
        return "NUMBER", len(text.split(".", 1)[1])
    if isinstance(v, str):
        return "TEXT", 0
    return "VARIANT", 0  # object or array


def detected_type(values: list[Any]) -> str:
    """Schema detection's type for a field with these values (None for JSON null): see the module docstring."""
    kinds = {_kind(v) for v in values if v is not None}
    names = {k for k, _ in kinds}
    if not names:
        return "VARIANT"
    if names == {"NUMBER"}:
        return f"NUMBER(38,{min(37, max(s for _, s in kinds))})"
    if len(names) == 1:
        return names.pop()
    if names <= {"NUMBER", "REAL"}:
        return "REAL"
    if names <= {"NUMBER", "REAL", "TEXT"}:
        return "TEXT"
    return "VARIANT"


def _duck_type(sf_type: str) -> str:
    return sf_type.replace("NUMBER", "DECIMAL") if sf_type.startswith("NUMBER") else _DUCK_TYPES[sf_type]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns(duck: Any, catalog: str, schema: str, name: str) -> list[tuple[str, str, bool]]:
    """(name, DuckDB type, nullable) of a table's columns, in order."""
    return [
        (c, t, bool(n))
        for c, t, n in duck.execute(
            "SELECT column_name, data_type, is_nullable FROM duckdb_columns() WHERE lower(database_name) = lower(?) "
            "AND lower(schema_name) = lower(?) AND lower(table_name) = lower(?) ORDER BY column_index",
            [catalog, schema, name],
        ).fetchall()
    ]


def _records(duck: Any, reader: Any, url: str) -> list[dict]:
    """A JSON file's records as objects (a line that is not an object has no fields)."""
    read = reader.read_expression(url).sql(dialect="duckdb")
    lines = duck.execute(f"SELECT json FROM {read}").fetch_arrow_table().column(0).to_pylist()
    out = []
    for line in lines:
        v = json.loads(line, parse_int=_Raw, parse_float=_Raw) if line is not None else None
        out.append(v if isinstance(v, dict) else {})
    return out


def _column_for(key: str, columns: list[str], case_insensitive: bool) -> str | None:
    if case_insensitive:
        return next((c for c in columns if c.upper() == key.upper()), None)
    return key if key in columns else None


def _text(v: Any, duck_type: str) -> str | None:
    """A JSON value as text DuckDB casts to the column's type (the cast refuses what Snowflake refuses)."""
    if v is None:
        return None
    if duck_type == "JSON":
        return strict_sql._dump(v)  # noqa: SLF001
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return str.__str__(v)
    return strict_sql._dump(v)  # noqa: SLF001


class _Plan:
    """What one COPY ... MATCH_BY_COLUMN_NAME does: columns to add, NOT NULL to drop, rows per file."""

    def __init__(self, records: dict[str, list[dict]], columns: list[tuple[str, str, bool]], mode: str,
                 metadata: dict[str, str]):
        self.ci = mode == "CASE_INSENSITIVE"
        self.records, self.metadata = records, metadata
        self.columns = {c: t for c, t, _ in columns}
        names = list(self.columns)
        unmatched: dict[str, list[Any]] = {}
        for recs in records.values():
            for rec in recs:
                for k, v in rec.items():
                    if _column_for(k, names, self.ci) is None:
                        unmatched.setdefault(k.upper() if self.ci else k, []).append(v)
        self.new = {k: detected_type(vs) for k, vs in unmatched.items()}
        lacking = {c for c in names for recs in records.values() for rec in recs
                   if not any(_column_for(k, [c], self.ci) for k in rec)}
        self.drop_not_null = [c for c, _, nullable in columns if not nullable and c in lacking and c not in metadata]

    def evolve(self, duck: Any, table_sql: str, table_name: str) -> None:
        if len(self.new) > MAX_NEW_COLUMNS:
            raise strict_sql.StrictError(
                "002262", "54000",
                f"Schema evolution of table '{table_name}' would add {len(self.new)} columns in one COPY; at most "
                f"{MAX_NEW_COLUMNS} columns are added per COPY (local stand-in: the statement fails, nothing is added)",
            )
        for name, sf_type in self.new.items():
            duck.execute(f"ALTER TABLE {table_sql} ADD COLUMN {_quote(name)} {_duck_type(sf_type)}")
            self.columns[name] = _duck_type(sf_type)
        for name in self.drop_not_null:
            duck.execute(f"ALTER TABLE {table_sql} ALTER COLUMN {_quote(name)} DROP NOT NULL")

    def insert(self, duck: Any, table: exp.Table, url: str, filename: str) -> exp.Expression:
        """The INSERT loading one file: its rows registered as a text table, cast to the columns' types."""
        names = list(self.columns)
        cols: dict[str, list[str | None]] = {c: [] for c in names}
        scan = datetime.datetime.now(datetime.UTC).isoformat()
        for row, rec in enumerate(self.records[url], start=1):
            by_col: dict[str, Any] = {}
            for k, v in rec.items():
                col = _column_for(k, names, self.ci)
                if col is not None and by_col.get(col) is None:
                    by_col[col] = v
            for c in names:
                field = self.metadata.get(c)
                if field == "METADATA$FILENAME":
                    cols[c].append(filename)
                elif field == "METADATA$FILE_ROW_NUMBER":
                    cols[c].append(str(row))
                elif field in ("METADATA$START_SCAN_TIME", "METADATA$FILE_LAST_MODIFIED"):
                    cols[c].append(scan)
                else:
                    cols[c].append(_text(by_col.get(c), self.columns[c]))
        view = f"__sf_mbcn_{uuid.uuid4().hex}"
        duck.register(view, pa.table({f"c{i}": pa.array(cols[c], pa.string()) for i, c in enumerate(names)}))
        select = ", ".join(f"CAST(c{i} AS {self.columns[c]})" for i, c in enumerate(names))
        target = ", ".join(_quote(c) for c in names)
        return sqlglot.parse_one(f"INSERT INTO {table.sql(dialect='duckdb')} ({target}) SELECT {select} FROM {view}", read="duckdb")


def _check_options(expr: exp.Copy, mode: str, metadata: dict[str, str]) -> None:
    if mode not in ("NONE", "CASE_SENSITIVE", "CASE_INSENSITIVE"):
        raise _compilation_error(f"Invalid value '{mode}' for parameter MATCH_BY_COLUMN_NAME", "001008", "22023")
    if metadata and mode == "NONE":
        raise _compilation_error("INCLUDE_METADATA can only be used with the MATCH_BY_COLUMN_NAME copy option")
    if mode != "NONE" and isinstance((expr.args.get("files") or [None])[0], exp.Subquery):
        raise _compilation_error("match_by_column_name is not supported with copy transform")


def _check_metadata_columns(columns: list[tuple[str, str, bool]], metadata: dict[str, str]) -> None:
    """INCLUDE_METADATA's columns must exist: evolution never adds them (DOC_COPY)."""
    missing = [c for c in metadata if columns and c not in {n for n, _, _ in columns}]
    if missing:
        raise _compilation_error(f"invalid identifier '{missing[0]}' (INCLUDE_METADATA columns must exist)", "000904")


def load(duck: Any, database: str | None, schema: str | None, expr: exp.Copy, table_stages: Any,
         params: Any = None, *, _original: Any = _copy_into.copy_into) -> str:
    """fakesnow's COPY, with MATCH_BY_COLUMN_NAME for JSON files, INCLUDE_METADATA and schema evolution."""
    mbcn = _param(expr, "MATCH_BY_COLUMN_NAME")
    mode = mbcn.expression.name.upper() if mbcn is not None else "NONE"
    include = _param(expr, "INCLUDE_METADATA")
    metadata = _include_metadata(include)
    _check_options(expr, mode, metadata)
    if include is not None:
        expr.set("params", [p for p in expr.args["params"] if p is not include])
    cparams = _copy_into._params(expr, params, duck_conn=duck, current_database=database,  # noqa: SLF001
                                 current_schema=schema)
    if mode == "NONE" or not isinstance(cparams.file_format, _copy_into.ReadJSON):
        return _original(duck, database, schema, expr, table_stages, params)
    table = _copy_into._extract_table(expr.this)  # noqa: SLF001
    catalog, db = table.catalog or database, table.db or schema
    source = _copy_into._from_source(expr)  # noqa: SLF001
    if source.startswith("@"):
        source = _copy_into.stage_url_from_var(source[1:], duck, database, schema, table_stages, table)
    urls = _copy_into._source_urls(source, cparams.files) if cparams.files else _copy_into._source_glob(source, duck)  # noqa: SLF001
    columns = _columns(duck, str(catalog), str(db), table.name)
    if not columns:
        return _original(duck, database, schema, expr, table_stages, params)  # no such table: fakesnow says so
    _check_metadata_columns(columns, metadata)
    plan = _Plan({u: _records(duck, cparams.file_format, u) for u in urls}, columns, mode, metadata)
    table_sql = table.sql(dialect="duckdb")
    if evolves(load_history.table_key(duck, table, database, db)):
        plan.evolve(duck, table_sql, table.name)
    else:
        plan.new = {}
    _local.prepared = {u: plan.insert(duck, table, u, u[len(source):] if u.startswith(source) else u) for u in urls}
    try:
        return _original(duck, database, schema, expr, table_stages, params)
    finally:
        _local.prepared = None


_orig_inserts = _copy_into._inserts  # noqa: SLF001


def _inserts(expr: exp.Copy, params: Any, urls: list[str], parquet_info: Any = None) -> list[exp.Expression]:
    prepared = getattr(_local, "prepared", None)
    if prepared:
        return [prepared[u] for u in urls]
    return _orig_inserts(expr, params, urls, parquet_info)


_ADD_EXISTING_RE = re.compile(r'Column with name "?(.+?)"? already exists')
_NOT_NULL_RE = re.compile(r"NOT NULL constraint failed")


def map_error(e: BaseException) -> tuple[str, str, str] | None:
    """Snowflake's (code, sqlState, message) for DuckDB's answers to ADD COLUMN of an existing column and to a
    NULL in a NOT NULL column; None otherwise."""
    text = str(getattr(e, "msg", None) or e)
    if m := _ADD_EXISTING_RE.search(text):
        return "001430", "42601", f"SQL compilation error:\ncolumn '{m.group(1).upper()}' already exists"
    if _NOT_NULL_RE.search(text):
        return "100072", "22000", "NULL result in a non-nullable column"
    return None


_installed = False


def install() -> None:
    """Patch fakesnow (once): the table parameter, SHOW TABLES, COPY ... MATCH_BY_COLUMN_NAME."""
    global _installed
    if _installed:
        return
    _installed = True
    prev = FakeSnowflakeCursor._execute  # noqa: SLF001
    FakeSnowflakeCursor._execute = lambda self, t, params=None: _execute(prev, self, t, params)  # noqa: SLF001
    _copy_into._inserts = _inserts  # noqa: SLF001
