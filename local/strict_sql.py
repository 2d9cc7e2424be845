"""Snowflake's data refusals that fakesnow (DuckDB) does not make, for local/snowflake_service.py.

The local service referees the project's end-to-end tests, so it must refuse at least what
Snowflake refuses, with Snowflake's error codes, SQL states and message shapes:

- MERGE whose target row joins several source rows that would update it (or update and delete it):
  100090 (42P18) "Duplicate row detected during DML action\\nRow Values: [...]", checked inside the
  statement before anything is written (ERROR_ON_NONDETERMINISTIC_MERGE defaults to TRUE).
- PARSE_JSON(s) / PARSE_JSON(s, 's') on a repeated object key or invalid JSON text: 100069 (22P02)
  "Error parsing JSON: ..."; PARSE_JSON(s, 'd') keeps the last value of a repeated key.
- COPY of JSON files: a line with a repeated key fails the file unless the file format says
  ALLOW_DUPLICATE = TRUE, which keeps the last value.
- NUMBER(p,s) out of range: 100039 (22003) for text, 100046 (22003) for numbers; NUMBER and the
  integer types hold 38 digits (fakesnow made them BIGINT).
- DATE / TIMESTAMP outside the years 1..9999: 100040 / 100035 (22007) "... is not recognized".

install() patches fakesnow once; map_error() and binding_error() are the service's hooks. The
refusals raised inside DuckDB travel as error('SFSTRICT[code/state]...') messages that map_error()
turns back into (code, sqlState, message).
"""

from __future__ import annotations

import decimal
import json
import re
import uuid
from typing import Any

import duckdb
import pyarrow as pa
import snowflake.connector.errors as sf_errors
import sqlglot
from sqlglot import exp

import fakesnow.copy_into as _copy_into
import fakesnow.transforms as _fs_transforms
from fakesnow.cursor import FakeSnowflakeCursor
from fakesnow.transforms.file_format import lookup_file_format
from fakesnow.transforms.merge import operations as merge_operations
from fakesnow.transforms.options import parse_options

# Documentation each refusal follows.
DOC_MERGE = "https://docs.snowflake.com/en/sql-reference/sql/merge"  # "Duplicate join behavior"
DOC_PARSE_JSON = "https://docs.snowflake.com/en/sql-reference/functions/parse_json"
DOC_FILE_FORMAT = "https://docs.snowflake.com/en/sql-reference/sql/create-file-format"  # ALLOW_DUPLICATE
DOC_NUMERIC = "https://docs.snowflake.com/en/sql-reference/data-types-numeric"
DOC_TO_DECIMAL = "https://docs.snowflake.com/en/sql-reference/functions/to_decimal"
DOC_DATETIME = "https://docs.snowflake.com/en/sql-reference/data-types-datetime"

MARK = "SFSTRICT"
_MARK_RE = re.compile(r"SFSTRICT\[(\d{6})/([0-9A-Z]{5})\]([A-Z]*):(.*)", re.S)
SEP = "\x1f"  # separates the fields of a marker payload; valid JSON text never holds it raw


class StrictError(sf_errors.ProgrammingError):
    """A Snowflake data error raised by the local service's own checks."""

    def __init__(self, code: str, sqlstate: str, message: str):
        super().__init__(msg=message, errno=int(code), sqlstate=sqlstate)


# ---------------------------------------------------------------------------------------------
# JSON text: Snowflake's PARSE_JSON rules (DOC_PARSE_JSON)
# ---------------------------------------------------------------------------------------------


class _Duplicate(Exception):
    pass


class _RawNumber(str):
    """A JSON number kept as written, so a re-serialized document changes no digit."""


def _pairs_unique(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _Duplicate
    return obj


_TOKEN_RE = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|([{}\[\],:])|([^\s{}\[\],:"]+))', re.S)


def first_duplicate(text: str) -> tuple[str, int] | None:
    """The first repeated key of an object in valid JSON text, and the offset just past it.

    Snowflake reports `duplicate object attribute "a", pos 31` for `{ "a" : "123", "b" : "456",
    "a": "789"}` (DOC_PARSE_JSON): 31 is the offset just past the repeated key's closing quote.
    """
    stack: list[set | None] = []
    key_next = False
    for m in _TOKEN_RE.finditer(text):
        string, punct = m.group(1), m.group(2)
        if punct == "{":
            stack.append(set())
            key_next = True
        elif punct == "[":
            stack.append(None)
            key_next = False
        elif punct in ("}", "]"):
            stack.pop()
            key_next = False
        elif punct == ",":
            key_next = bool(stack) and stack[-1] is not None
        elif punct == ":":
            key_next = False
        elif string is not None and key_next and stack and (keys := stack[-1]) is not None:
            key = json.loads(string)
            if key in keys:
                return key, m.end(1)
            keys.add(key)
            key_next = False
    return None


def _dump(value: Any) -> str:
    if isinstance(value, _RawNumber):
        return str.__str__(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _json_error_reason(e: json.JSONDecodeError) -> str:
    # Snowflake's own wording per case is not documented; the prefix, code and state are.
    msg = e.msg
    if msg.startswith("Unterminated string"):
        return "unfinished string"
    if msg.startswith("Expecting value"):
        return "unknown keyword" if e.pos < len(e.doc) and e.doc[e.pos].isalpha() else "invalid value"
    if msg.startswith("Expecting property name"):
        return "invalid object attribute name"
    if msg.startswith("Expecting ':'"):
        return "missing colon"
    if msg.startswith("Expecting ','"):
        return "missing comma"
    if msg.startswith("Extra data"):
        return "extra data after the JSON value"
    return msg[:1].lower() + msg[1:]


def duplicate_message(key: str, pos: int) -> str:
    return f"Error parsing JSON: duplicate object attribute {json.dumps(key, ensure_ascii=False)}, pos {pos}"


def normalize_json(text: str, allow_duplicate: bool) -> str | None:
    """PARSE_JSON's reading of `text`: None for SQL NULL, else the text DuckDB should store.

    The text comes back unchanged unless a repeated key is allowed, in which case the document is
    re-serialized with the last value of each repeated key. Raises StrictError (100069, 22P02)
    for invalid JSON and, unless allowed, for a repeated key.
    """
    if not text.strip(" \t\n\r"):
        return None  # DOC_PARSE_JSON: an empty or whitespace-only string gives NULL, not an error
    try:
        json.loads(text, object_pairs_hook=_pairs_unique)
        return text
    except _Duplicate:
        if not allow_duplicate:
            key, pos = first_duplicate(text) or ("?", 0)
            raise StrictError("100069", "22P02", duplicate_message(key, pos)) from None
        # a plain dict keeps the last value of a repeated key
        return _dump(json.loads(text, parse_int=_RawNumber, parse_float=_RawNumber))
    except json.JSONDecodeError as e:
        raise StrictError("100069", "22P02", f"Error parsing JSON: {_json_error_reason(e)}, pos {e.pos}") from None
    except RecursionError:
        raise StrictError("100069", "22P02", "Error parsing JSON: document is nested too deeply") from None


# ---------------------------------------------------------------------------------------------
# Statement rewrites, applied to each statement fakesnow is about to run
# ---------------------------------------------------------------------------------------------


def _placeholder_order(expression: exp.Expression) -> dict[int, int]:
    """id(placeholder node) -> its index among the `?` of the SQL text DuckDB will run."""
    nodes = list(expression.find_all(exp.Placeholder))
    if len(nodes) <= 1:
        return {id(n): 0 for n in nodes}
    saved = [n.args.get("this") for n in nodes]
    try:
        for i, n in enumerate(nodes):
            n.set("this", f"sfph{i}x")
        text = expression.sql(dialect="duckdb")
    finally:
        for n, this in zip(nodes, saved, strict=True):
            n.set("this", this)
    order = [int(m) for m in re.findall(r"sfph(\d+)x", text)]
    return {id(nodes[dfs]): pos for pos, dfs in enumerate(order)}


def _has_placeholder(node: exp.Expression) -> bool:
    return node.find(exp.Placeholder) is not None


def _parse_json_mode_allows_duplicates(node: exp.ParseJSON) -> bool:
    mode = node.args.get("expression")
    return isinstance(mode, exp.Literal) and mode.is_string and mode.this.lower() == "d"


_JSON_DUP_KEY_SQL = (
    "(SELECT first(__sf_jt.key) FROM json_tree({arg}) AS __sf_jt WHERE __sf_jt.parent IS NOT NULL "
    "GROUP BY __sf_jt.parent, __sf_jt.key HAVING count(*) > 1 LIMIT 1)"
)


def _strict_parse_json(transformed: exp.Expression, params: list | None) -> None:
    """PARSE_JSON per DOC_PARSE_JSON: bound and literal texts are read here, in Python, before the
    statement runs (so a refused MERGE writes nothing); other arguments are checked in SQL."""
    nodes = [n for n in transformed.find_all(exp.ParseJSON)]
    if not nodes:
        return
    order: dict[int, int] | None = None
    for node in nodes:
        arg = node.this
        allow = _parse_json_mode_allows_duplicates(node)
        safe = bool(node.args.get("safe"))
        if isinstance(arg, exp.Placeholder) and params is not None:
            if order is None:
                order = _placeholder_order(transformed)
            idx = order.get(id(arg))
            if idx is None or idx >= len(params) or not isinstance(params[idx], str):
                continue
            try:
                params[idx] = normalize_json(params[idx], allow)
            except StrictError:
                if not safe:
                    raise
                params[idx] = None
        elif isinstance(arg, exp.Literal) and arg.is_string:
            try:
                out = normalize_json(arg.this, allow)
            except StrictError:
                if not safe:
                    raise
                out = None
            arg.replace(exp.Null() if out is None else exp.Literal.string(out))
        elif not safe and not isinstance(arg, exp.Null) and not _has_placeholder(arg):
            # An expression (a column, ...): blank text is NULL; a repeated key fails the row. DuckDB
            # keeps every copy of a repeated key, so PARSE_JSON(<expression>, 'd') cannot keep the last
            # value here: it refuses instead of silently answering with the first one.
            text = f"NULLIF(TRIM(CAST({arg.sql(dialect='duckdb')} AS VARCHAR), ' \t\n\r'), '')"
            dup = _JSON_DUP_KEY_SQL.format(arg=text)
            fail = (
                f"error('{MARK}[002040/0A000]:PARSE_JSON(<expression>, ''d'') of an object with a repeated key "
                "is not supported by the local stack (DuckDB keeps the first value)')"
                if allow
                else f"error('{MARK}[100069/22P02]PJDUP:' || CAST({text} AS VARCHAR))"
            )
            node.replace(
                sqlglot.parse_one(
                    f"SELECT CASE WHEN {dup} IS NOT NULL THEN {fail} ELSE JSON({text}) END", read="duckdb"
                ).selects[0]
            )


_DATETIME_TYPES: dict[exp.DataType.Type, tuple[str, str, str, str]] = {
    # type -> (code, noun, lowest, highest) per DOC_DATETIME: years 1..9999
    exp.DataType.Type.DATE: ("100040", "Date", "0001-01-01", "9999-12-31"),
    exp.DataType.Type.TIMESTAMP: ("100035", "Timestamp", "0001-01-01", "9999-12-31 23:59:59.999999"),
    exp.DataType.Type.TIMESTAMPNTZ: ("100035", "Timestamp", "0001-01-01", "9999-12-31 23:59:59.999999"),
    exp.DataType.Type.DATETIME: ("100035", "Timestamp", "0001-01-01", "9999-12-31 23:59:59.999999"),
    exp.DataType.Type.TIMESTAMPTZ: ("100035", "Timestamp", "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00"),
    exp.DataType.Type.TIMESTAMPLTZ: (
        "100035", "Timestamp", "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00",
    ),
    exp.DataType.Type.TIMESTAMP_S: ("100035", "Timestamp", "0001-01-01", "9999-12-31 23:59:59"),
    exp.DataType.Type.TIMESTAMP_MS: ("100035", "Timestamp", "0001-01-01", "9999-12-31 23:59:59.999"),
}


def _checked_datetime(node: exp.Expression) -> exp.Expression:
    """`node` (a CAST to a date/timestamp type, or fakesnow's _fs_to_timestamp(x, scale) that stands
    for a cast to TIMESTAMP_NTZ and for TO_TIMESTAMP) failing outside the years 1..9999 (TRY_CAST:
    NULL instead). DuckDB itself accepts years up to 294247. The input is evaluated once (a list
    lambda), so a bound `?` stays a single placeholder."""
    if isinstance(node, exp.Cast):
        to = node.to
        try_ = isinstance(node, exp.TryCast)
        typ = to.sql(dialect="duckdb")
        code, noun, low, high = _DATETIME_TYPES[to.this]
        convert = f"{'TRY_CAST' if try_ else 'CAST'}(__sf_s AS {typ})"
    else:  # _fs_to_timestamp(x, scale): a TIMESTAMP
        try_ = False
        typ = "TIMESTAMP"
        code, noun, low, high = _DATETIME_TYPES[exp.DataType.Type.TIMESTAMP]
        convert = f"_fs_to_timestamp(__sf_s, {node.expressions[1].sql(dialect='duckdb')})"
    # the input as Snowflake echoes it: a VARIANT string without its quotes
    shown = "TRIM(CAST(__sf_s AS VARCHAR), '\"')"
    quote = "'''"
    otherwise = (
        "NULL" if try_ else f"error('{MARK}[{code}/22007]:{noun} {quote} || {shown} || {quote} is not recognized')"
    )
    template = (
        f"SELECT LIST_TRANSFORM([__sf_x], __sf_s -> LIST_TRANSFORM([{convert}], __sf_v -> "
        f"CASE WHEN __sf_v IS NULL OR __sf_v BETWEEN CAST('{low}' AS {typ}) AND CAST('{high}' AS {typ}) "
        f"THEN __sf_v ELSE {otherwise} END)[1])[1]"
    )
    checked = sqlglot.parse_one(template, read="duckdb").selects[0]
    marker = next(c for c in checked.find_all(exp.Column) if c.name == "__sf_x")
    marker.replace(node.this if isinstance(node, exp.Cast) else node.expressions[0])
    return checked


def _is_datetime_conversion(node: exp.Expression) -> bool:
    if isinstance(node, exp.Cast):
        return isinstance(node.to, exp.DataType) and node.to.this in _DATETIME_TYPES
    return (
        isinstance(node, exp.Anonymous)
        and node.name.upper() == "_FS_TO_TIMESTAMP"
        and len(node.expressions) == 2
        and not _has_placeholder(node.expressions[1])
    )


def _strict_datetime_casts(transformed: exp.Expression) -> None:
    nodes = [
        n
        for n in transformed.find_all(exp.Cast, exp.Anonymous)
        if _is_datetime_conversion(n) and not n.find_ancestor(exp.ColumnDef)
    ]
    for node in nodes:
        name = None
        if isinstance(node.parent, exp.Select) and node.arg_key == "expressions":
            # keep the column name DuckDB gives the unaliased expression
            try:
                name = duckdb.SQLExpression(node.sql(dialect="duckdb")).get_name()
            except Exception:  # noqa: BLE001 - no name is better than no check
                name = None
        checked = _checked_datetime(node)
        node.replace(exp.alias_(checked, name, quoted=True) if name else checked)


# ---------------------------------------------------------------------------------------------
# MERGE: duplicate join behavior (DOC_MERGE)
# ---------------------------------------------------------------------------------------------

CHECK_KEY = "strict_merge_check"


def _with_merge_check(merge: exp.Merge, statements: list[exp.Expression]) -> list[exp.Expression]:
    """fakesnow's MERGE statements with a check after CREATE merge_candidates, before any write.

    DOC_MERGE, "Duplicate join behavior": with ERROR_ON_NONDETERMINISTIC_MERGE = TRUE (the default)
    a MERGE fails when a target row joins several source rows that would update it, or one that
    would update it and another that would delete it. Source rows that only delete a target row are
    deterministic, and so are source rows that match no target row (each one is inserted).

    merge_candidates holds one row per joined (target, source) pair with the WHEN clause it takes
    (the first whose condition holds, as in the MERGE); it gains the target's rowid, and the check
    counts the clauses per target row there, without evaluating the source a second time."""
    ops = merge_operations(merge)
    create, target = statements[0], merge.this
    select = create.expression if isinstance(create, exp.Create) else None
    if not ops["updated"] or not isinstance(select, exp.Select) or not isinstance(target, exp.Table):
        return statements  # without an UPDATE clause every duplicate join is deterministic
    ref = target.alias or target.name
    select.select(f"{ref}.rowid AS __sf_target_rowid", copy=False)
    updates = ", ".join(map(str, ops["updated"]))
    deletes = ", ".join(map(str, ops["deleted"])) or "NULL"
    check = sqlglot.parse_one(
        f"""
        SELECT {ref}.* FROM {target} WHERE {ref}.rowid IN (
            SELECT __sf_target_rowid FROM merge_candidates WHERE __sf_target_rowid IS NOT NULL
            GROUP BY __sf_target_rowid
            HAVING COUNT_IF(merge_op IN ({updates})) > 1
                OR (COUNT_IF(merge_op IN ({updates})) > 0 AND COUNT_IF(merge_op IN ({deletes})) > 0)
        ) LIMIT 1
        """
    )
    check.set(CHECK_KEY, True)
    return [create, check, *statements[1:]]


def _render_value(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, decimal.Decimal)):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)


def _run_merge_check(cur: Any, transformed: exp.Expression) -> None:
    duck = cur._duck_conn  # noqa: SLF001
    duck.execute(transformed.sql(dialect="duckdb"))
    row = duck.fetchone()
    if row is not None:
        raise StrictError(
            "100090",
            "42P18",
            "Duplicate row detected during DML action\nRow Values: [" + ", ".join(map(_render_value, row)) + "]",
        )


_orig_merge = _fs_transforms.merge


def _merge_with_check(expression: exp.Expression) -> list[exp.Expression]:
    out = _orig_merge(expression)
    if len(out) > 1 and isinstance(expression, exp.Merge):
        return _with_merge_check(expression, out)
    return out


# ---------------------------------------------------------------------------------------------
# COPY of JSON files: ALLOW_DUPLICATE (DOC_FILE_FORMAT)
# ---------------------------------------------------------------------------------------------


def _copy_file_format_options(expr: exp.Copy, duck_conn: Any, database: str | None, schema: str | None) -> dict:
    for param in expr.args.get("params", []):
        if isinstance(param.this, exp.Var) and param.this.name.upper() == "FILE_FORMAT":
            options = parse_options(param.expressions)
            if name := options.pop("FORMAT_NAME", None):
                options = {**lookup_file_format(duck_conn, str(name), database, schema), **options}
            return options
    return {}


class StrictReadJSON(_copy_into.ReadJSON):
    """NDJSON lines as Snowflake reads them: a repeated key fails the file unless ALLOW_DUPLICATE."""

    def __init__(self, allow_duplicate: bool, duck_conn: Any):
        super().__init__()
        self.allow_duplicate = allow_duplicate
        self.duck_conn = duck_conn

    def read_expression(self, url: str) -> exp.Expression:
        base = super().read_expression(url)
        base_sql = base.sql(dialect="duckdb")
        if not self.allow_duplicate:
            # checked as the file is loaded, so the refusal is this file's
            dup = _JSON_DUP_KEY_SQL.format(arg="__sf_r.json")
            where = url.replace("'", "''")
            fail = (
                f"error('{MARK}[100069/22P02]COPYDUP:{where}' || chr(31) || CAST(__sf_r.__sf_line AS VARCHAR) "
                "|| chr(31) || CAST(__sf_r.json AS VARCHAR))"
            )
            sql = (
                f"(SELECT CASE WHEN {dup} IS NULL THEN __sf_r.json ELSE {fail} END AS json FROM "
                f"(SELECT row_number() OVER () AS __sf_line, json FROM {base_sql}) AS __sf_r)"
            )
            return sqlglot.parse_one(sql, read="duckdb")
        # ALLOW_DUPLICATE = TRUE keeps the last value, which DuckDB cannot do in SQL: a file with a
        # repeated key is read here and its lines re-serialized; any other file loads as it is.
        try:
            found = self.duck_conn.execute(
                f"SELECT 1 FROM {base_sql} AS __sf_r WHERE {_JSON_DUP_KEY_SQL.format(arg='__sf_r.json')} "
                "IS NOT NULL LIMIT 1"
            ).fetchone()
        except duckdb.Error:
            return base  # the load itself reports what is wrong with the file
        if not found:
            return base
        lines = self.duck_conn.execute(f"SELECT json FROM {base_sql}").fetch_arrow_table().column(0).to_pylist()
        fixed = [None if line is None else normalize_json(line, True) for line in lines]
        name = f"__sf_json_{uuid.uuid4().hex}"
        self.duck_conn.register(name, pa.table({"json": pa.array(fixed, pa.string())}))
        return sqlglot.parse_one(f"(SELECT CAST(json AS JSON) AS json FROM {name})", read="duckdb")


_orig_copy_params = _copy_into._params  # noqa: SLF001


def _copy_params_strict(
    expr: exp.Copy,
    params: Any = None,
    duck_conn: Any = None,
    current_database: str | None = None,
    current_schema: str | None = None,
) -> Any:
    cparams = _orig_copy_params(
        expr, params, duck_conn=duck_conn, current_database=current_database, current_schema=current_schema
    )
    if type(cparams.file_format) is _copy_into.ReadJSON and duck_conn is not None:
        options = _copy_file_format_options(expr, duck_conn, current_database, current_schema)
        allow = str(options.get("ALLOW_DUPLICATE", False)).upper() in ("TRUE", "1")
        cparams.file_format = StrictReadJSON(allow, duck_conn)
    return cparams


# ---------------------------------------------------------------------------------------------
# NUMBER: 38 digits for NUMBER and the integer types (DOC_NUMERIC)
# ---------------------------------------------------------------------------------------------

_NUMBER_38_0 = exp.DataType.build("DECIMAL(38, 0)")


def _integer_precision_38(expression: exp.Expression) -> exp.Expression:
    """NUMBER, NUMBER(38,0), INT, INTEGER, SMALLINT and TINYINT are NUMBER(38,0): all integers of up to
    38 digits (DOC_NUMERIC). fakesnow made them BIGINT, which refused values of 19 to 38 digits. An
    explicit BIGINT stays one: fakesnow's own rewrites cast to BIGINT where DuckDB needs an integer."""
    if isinstance(expression, exp.DataType) and (
        (expression.this == exp.DataType.Type.DECIMAL
         and (not expression.expressions or [e.sql() for e in expression.expressions] == ["38", "0"]))
        or expression.this in (exp.DataType.Type.INT, exp.DataType.Type.SMALLINT, exp.DataType.Type.TINYINT)
    ):
        return _NUMBER_38_0.copy()
    return expression


# ---------------------------------------------------------------------------------------------
# The hooks
# ---------------------------------------------------------------------------------------------

_installed = False


def install() -> None:
    """Patch fakesnow (once): statement rewrites, the MERGE check, strict JSON files."""
    global _installed
    if _installed:
        return
    _installed = True
    prev_execute = FakeSnowflakeCursor._execute  # noqa: SLF001

    def _execute_strict(self: Any, transformed: Any, params: Any = None) -> Any:
        if isinstance(transformed, exp.Describe):
            return prev_execute(self, transformed, params)  # re-runs a statement already checked
        if isinstance(params, tuple):
            params = list(params)
        _strict_parse_json(transformed, params)
        _strict_datetime_casts(transformed)
        if transformed.args.get(CHECK_KEY):
            return _run_merge_check(self, transformed)
        return prev_execute(self, transformed, params)

    FakeSnowflakeCursor._execute = _execute_strict  # noqa: SLF001
    _fs_transforms.merge = _merge_with_check
    _copy_into._params = _copy_params_strict  # noqa: SLF001
    _fs_transforms.integer_precision = _integer_precision_38


def binding_error(typ: str, value: str) -> StrictError | None:
    """The SQL error for a bound DATE/TIMESTAMP value outside the years 1..9999 (DOC_DATETIME), which
    Python cannot even represent; None for a value that is malformed rather than out of range."""
    typ = typ.upper()
    if typ not in ("DATE", "TIMESTAMP", "TIMESTAMP_NTZ", "TIMESTAMP_LTZ", "TIMESTAMP_TZ"):
        return None
    shown = value.strip()
    if not (re.fullmatch(r"-?\d+(\s+\d+)?", shown) or re.match(r"[+-]?\d{5,}-|-\d{4}-|0000-", shown)):
        return None
    if typ == "DATE":
        return StrictError("100040", "22007", f"Date '{shown}' is not recognized")
    return StrictError("100035", "22007", f"Timestamp '{shown}' is not recognized")


_NUM_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_STRING_TO_NUMBER_RE = re.compile(
    r"Could not convert string (['\"])(.*?)\1 to "
    r"(DECIMAL\(\d+,\s*\d+\)|U?(?:INT\d*|BIGINT|HUGEINT|INTEGER|SMALLINT|TINYINT))"
)
_NUMBER_OUT_OF_RANGE_RES = (
    re.compile(r'Casting value "(.*?)" to type DECIMAL\((\d+),\s*(\d+)\) failed: value is out of range'),
    re.compile(r"Could not cast value (\S+) to DECIMAL\((\d+),\s*(\d+)\)"),
    re.compile(r"Type \w+ with value (\S+) can't be cast because the value is out of range for the destination type "
               r"(INT\d+|DECIMAL\((\d+),\s*(\d+)\))"),
)
_MALFORMED_JSON_RE = re.compile(
    r'Malformed JSON(?: in file "(?P<file>.*?)")?,? at byte (?P<byte>\d+)(?: of input)?(?: in line (?P<line>\d+))?:'
    r"\s*(?P<reason>[^.]*)"
)


def _plain_number(text: str) -> str:
    try:
        d = decimal.Decimal(text)
    except decimal.InvalidOperation:
        return text
    out = format(d, "f")
    return out.rstrip("0").rstrip(".") if "." in out else out


def _storage_bytes(value: str, scale: int) -> int:
    # Snowflake names the width of the scaled integer: FIXED[SB2](4,2) for 123.45
    try:
        n = abs(int(decimal.Decimal(value).scaleb(scale).to_integral_value()))
    except (decimal.InvalidOperation, ValueError):
        return 16
    return next((b for b in (1, 2, 4, 8) if n < 2 ** (8 * b - 1)), 16)


def _copy_duplicate_message(payload: str) -> str:
    file, _, rest = payload.partition(SEP)
    line, _, text = rest.partition(SEP)
    key, pos = first_duplicate(text) or ("?", 0)
    return (
        f"{duplicate_message(key, pos)}\n  File '{file}', line {line}, character {pos + 1}\n"
        f"  Row {line} starts at line {line}, column $1\n"
        "  If you would like to continue loading when an error is encountered, use other values such as "
        "'SKIP_FILE' or 'CONTINUE' for the ON_ERROR option. For more information on loading options, "
        "please run 'info loading_data' in a SQL client."
    )


_UNKNOWN_COLUMN_RE = re.compile(
    r'Binder Error: (?:Referenced (?:update )?column "?(?P<name>[^"!]+?)"? not found|Table "[^"]+" does not have a column with name "(?P<name2>[^"]+)")'
)


def map_error(e: BaseException) -> tuple[str, str, str] | None:
    """Snowflake's (code, sqlState, message) for an error this module raised or a DuckDB data error
    that has a Snowflake counterpart; None to let the service map it."""
    if isinstance(e, StrictError):
        # the connector's msg carries an "100090 (42P18): " prefix; the SQL API message does not
        return f"{e.errno:06d}", e.sqlstate or "22000", re.sub(r"^\d{6} \([0-9A-Z]{5}\): ", "", str(e.msg))
    text = str(e.msg or "") if isinstance(e, sf_errors.Error) else str(e)
    if m := _MARK_RE.search(text):
        code, state, kind, payload = m.groups()
        if kind == "PJDUP":
            key, pos = first_duplicate(payload) or ("?", 0)
            return code, state, duplicate_message(key, pos)
        if kind == "COPYDUP":
            return code, state, _copy_duplicate_message(payload)
        return code, state, payload.split("\n\nLINE ")[0]
    first = text.split("\n")[0]
    if m := _UNKNOWN_COLUMN_RE.search(first):
        # Snowflake names a column a statement reads or writes that the table does not have
        # "000904 (42000): SQL compilation error: ... invalid identifier '<NAME>'" (DuckDB: a
        # Binder Error, which the connector reports as 002043)
        return "000904", "42000", f"SQL compilation error: error line 1 at position 0\ninvalid identifier '\"{m['name'] or m['name2']}\"'"
    if m := _STRING_TO_NUMBER_RE.search(first):
        value = m.group(2)
        if _NUM_RE.fullmatch(value.strip()):
            # text cast to a NUMBER too narrow for it (DOC_TO_DECIMAL: "Numeric value '345.123' is out of range")
            return "100039", "22003", f"Numeric value '{value}' is out of range"
        return "100038", "22018", f"Numeric value '{value}' is not recognized"
    for pattern in _NUMBER_OUT_OF_RANGE_RES:
        if m := pattern.search(first):
            value = _plain_number(m.group(1))
            if len(m.groups()) >= 4 and m.group(2).startswith("INT"):
                precision, scale = 38, 0  # fakesnow's BIGINT stands for NUMBER(38,0)
            else:
                precision, scale = int(m.group(m.lastindex - 1)), int(m.group(m.lastindex))
            # a number cast to a NUMBER too narrow for it; Snowflake is known to answer 100046 (22003)
            # "Number out of representable range: type FIXED[SB2](4,2){...}, value 123.45"
            sb = _storage_bytes(value, scale)
            message = f"Number out of representable range: type FIXED[SB{sb}]({precision},{scale}), value {value}"
            return "100046", "22003", message
    if isinstance(e, (duckdb.InvalidInputException, sf_errors.Error)) and (m := _MALFORMED_JSON_RE.search(first)):
        message = f"Error parsing JSON: {m['reason'].strip()}, pos {m['byte']}"
        if m["file"]:
            message += f"\n  File '{m['file']}', line {m['line'] or '?'}, character {int(m['byte']) + 1}"
        return "100069", "22P02", message
    return None
