"""The SQL API request's context fields (database, schema, warehouse, role), resolved as Snowflake does.

Snowflake documents the four fields as case-sensitive: "The values in these fields are case-sensitive and
must match the case of the field returned by a SQL SHOW command"
(https://docs.snowflake.com/en/developer-guide/sql-api/submitting-requests, and the field descriptions in
local/specs/snowflake-sqlapi.yaml). An object created unquoted is stored upper-case, so `"database": "ingest"`
does not name the database INGEST. DuckDB (under fakesnow) resolves catalog and schema names
case-insensitively, so the service resolves them here, exactly, before it opens the session.

What a name that does not resolve does, like a session whose context is set at login:
- database / schema: the session has no current database (schema). The statement still runs: fully qualified
  names and CREATE DATABASE work, unqualified ones fail with fakesnow's (Snowflake's) 090105 / 090106
  "Cannot perform <cmd>. This session does not have a current database. Call 'USE DATABASE', or use a
  qualified name." (22000). Object name resolution: https://docs.snowflake.com/en/sql-reference/name-resolution
- warehouse: the session has no current warehouse. Statements that need compute (DML, COPY, queries that read
  a table) fail with 000606 (57P03) "No active warehouse selected in the current session.  Select an active
  warehouse with the 'use warehouse' command." (message as the connectors report it, e.g.
  https://github.com/Snowflake-Labs/OpenLineage-AccessHistory-Setup/issues/14); DDL and constant queries run.
  A request without `warehouse` uses the user's default warehouse (LOCAL_SF_DEFAULT_WAREHOUSE).
- role: the session cannot be opened in that role: 390189 (08004) "Role '<ROLE>' specified in the connect
  string does not exist or not authorized. Contact your local system administrator, or attempt to login with
  another role, e.g. PUBLIC." (the login error the connectors surface). A request without `role` uses the
  user's default role.

The local account has no warehouses or roles of its own: the known ones are configured (names as SHOW would
return them, i.e. exactly as a client must send them):
  LOCAL_SF_WAREHOUSES [COMPUTE_WH,WH,LOCAL_WH]  LOCAL_SF_DEFAULT_WAREHOUSE [COMPUTE_WH]
  LOCAL_SF_ROLES [LOADER_ROLE,PUBLIC]
"""

from __future__ import annotations

import os
from typing import Any

import snowflake.connector.errors as sf_errors
from sqlglot import exp

DEFAULT_WAREHOUSES = "COMPUTE_WH,WH,LOCAL_WH"
DEFAULT_ROLES = "LOADER_ROLE,PUBLIC"

NO_WAREHOUSE_MESSAGE = (
    "No active warehouse selected in the current session.  Select an active warehouse with the 'use warehouse' "
    "command."
)


def _names(var: str, default: str) -> list[str]:
    return [n.strip() for n in os.environ.get(var, default).split(",") if n.strip()]


def warehouses() -> list[str]:
    return _names("LOCAL_SF_WAREHOUSES", DEFAULT_WAREHOUSES)


def roles() -> list[str]:
    return _names("LOCAL_SF_ROLES", DEFAULT_ROLES)


def default_warehouse() -> str | None:
    return os.environ.get("LOCAL_SF_DEFAULT_WAREHOUSE", "COMPUTE_WH").strip() or None


def resolve_database_schema(duck: Any, database: str | None, schema: str | None) -> tuple[str | None, str | None]:
    """The request's database and schema when they name existing objects exactly (case-sensitively), else None.

    A schema resolves only inside the resolved database (without a current database there is no current schema).
    """
    if not database:
        return None, None
    rows = duck.execute(
        "SELECT catalog_name, schema_name FROM information_schema.schemata WHERE lower(catalog_name) = lower(?)",
        [database],
    ).fetchall()
    if not any(cat == database for cat, _ in rows):
        return None, None
    if not schema:
        return database, None
    if schema == "INFORMATION_SCHEMA":  # fakesnow keeps it as _FS_INFORMATION_SCHEMA
        return database, schema
    return database, schema if any(cat == database and sch == schema for cat, sch in rows) else None


def check_role(role: str | None) -> None:
    if role is None or role in roles():
        return
    raise sf_errors.ProgrammingError(
        msg=f"Role '{role[:255]}' specified in the connect string does not exist or not authorized. Contact your "
        "local system administrator, or attempt to login with another role, e.g. PUBLIC.",
        errno=390189,
        sqlstate="08004",
    )


def current_warehouse(warehouse: str | None) -> str | None:
    if warehouse is None:
        return default_warehouse()
    return warehouse if warehouse in warehouses() else None


def needs_warehouse(sql: str) -> bool:
    """Whether the statement needs compute: DML, COPY, and queries (or CREATE ... AS SELECT) that read a table."""
    from fakesnow.dialect import parse  # noqa: PLC0415 - fakesnow is imported after the service's patches

    try:
        stmts = [e for e in parse(sql) if e and not isinstance(e, exp.Semicolon)]
    except Exception:  # noqa: BLE001 - let execution report the syntax error
        return False
    for e in stmts:
        if isinstance(e, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Copy)):
            return True
        query = e.expression if isinstance(e, exp.Create) else e
        if isinstance(query, exp.Query) and any(
            isinstance(t.this, exp.Identifier) for t in query.find_all(exp.Table)
        ):
            return True
    return False


def check_warehouse(warehouse: str | None, sql: str) -> None:
    if current_warehouse(warehouse) is None and needs_warehouse(sql):
        raise sf_errors.ProgrammingError(msg=NO_WAREHOUSE_MESSAGE, errno=606, sqlstate="57P03")


def open_session(duck: Any, body: dict, sql: str) -> tuple[str | None, str | None]:
    """Checks the request's role and warehouse for this statement; returns the database and schema the session
    has (None where the request's name does not resolve exactly)."""
    check_role(body.get("role"))
    cur = duck.cursor()
    try:
        database, schema = resolve_database_schema(cur, body.get("database"), body.get("schema"))
    finally:
        cur.close()
    check_warehouse(body.get("warehouse"), sql)
    return database, schema
