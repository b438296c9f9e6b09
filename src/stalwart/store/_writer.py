"""Write a batch of rows in one transaction, idempotently, on SQLite or PostgreSQL.

Messages, transitions and reports are inserted with ``ON CONFLICT DO
NOTHING``; deliveries are upserted with the forward-only join of
:func:`stalwart.store._rows.fold_transition`, done in SQL; components keep
the newest heartbeat. Applying the same batch twice changes nothing.

On PostgreSQL, messages and transitions go in by binary ``COPY`` straight
into their tables when none of them is stored yet (the usual case); else,
and for deliveries always, by ``COPY`` into a session's temporary staging
table, then ``INSERT ... SELECT`` from it with the same conflict handling.
The few components and reports go in by ``INSERT ... SELECT * FROM
unnest(...)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Dialect, String, Table, and_, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine

from stalwart.store._rows import JsonText, Row, Rows
from stalwart.store.schema import (
    STATE_COLUMNS,
    UtcDateTime,
    components,
    deliveries,
    messages,
    reports,
    transitions,
)

__all__ = ["driver_values", "is_unavailable", "write_rows"]

_Insert = Callable[[Table], Any]
_TABLES = (messages, transitions, deliveries, components, reports)


def _insert_for(dialect: str) -> _Insert:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _greatest(dialect: str, a: Any, b: Any) -> ColumnElement[Any]:
    """The larger of two nullable values (NULL only when both are NULL)."""
    if dialect == "postgresql":
        return func.greatest(a, b)
    return func.max(func.coalesce(a, b), func.coalesce(b, a))


def _delivery_upsert(dialect: str) -> Any:
    stmt = _insert_for(dialect)(deliveries)
    new, old = stmt.excluded, deliveries.c
    wins = or_(
        new.state_rank > old.state_rank,
        and_(new.state_rank == old.state_rank, new.last_at > old.last_at),
    )
    updates: dict[str, Any] = {
        key: case((wins, new[key]), else_=old[key])
        for key in ("state", "state_rank", "last_at", "reason", "instance")
    }
    updates["attempts"] = _greatest(dialect, old.attempts, new.attempts)
    for col in STATE_COLUMNS.values():
        updates[col] = _greatest(dialect, old[col], new[col])
    updates["topic"] = func.coalesce(old.topic, new.topic)
    updates["message_created_at"] = func.coalesce(old.message_created_at, new.message_created_at)
    return stmt.on_conflict_do_update(index_elements=["message_id", "service"], set_=updates)


def _component_upsert(dialect: str) -> Any:
    stmt = _insert_for(dialect)(components)
    keys = {"service", "instance"}
    return stmt.on_conflict_do_update(
        index_elements=["service", "instance"],
        set_={c.name: stmt.excluded[c.name] for c in components.c if c.name not in keys},
        where=stmt.excluded.last_heartbeat > components.c.last_heartbeat,
    )


_JSON_COLUMNS = frozenset({"headers", "body", "refs", "patterns"})
_TIME_COLUMNS = frozenset(c.name for t in _TABLES for c in t.c if isinstance(c.type, UtcDateTime))


@dataclass(frozen=True, slots=True)
class _Compiled:
    """SQL text for the driver, its parameter order, and which parameters need converting."""

    sql: str
    keys: tuple[str, ...]
    json_at: tuple[int, ...]
    time_at: tuple[int, ...]


_STATEMENTS: dict[str, Callable[[str], Any]] = {
    "messages": lambda d: _insert_for(d)(messages).on_conflict_do_nothing(),
    "transitions": lambda d: _insert_for(d)(transitions).on_conflict_do_nothing(),
    "deliveries": _delivery_upsert,
    "components": _component_upsert,
    "reports": lambda d: _insert_for(d)(reports).on_conflict_do_nothing(),
}
_cache: dict[tuple[int, str], _Compiled] = {}


def _compiled(dialect: Dialect, name: str) -> _Compiled:
    """The statement compiled once per dialect, with its parameters' order."""
    key = (id(dialect), name)
    found = _cache.get(key)
    if found is None:
        compiled = _STATEMENTS[name](dialect.name).compile(dialect=dialect)
        keys = tuple(compiled.positiontup or ())
        found = _Compiled(
            str(compiled),
            keys,
            tuple(i for i, k in enumerate(keys) if k in _JSON_COLUMNS),
            tuple(i for i, k in enumerate(keys) if k in _TIME_COLUMNS),
        )
        _cache[key] = found
    return found


def _utc(value: datetime) -> datetime:
    """Aware UTC; a naive time is taken as UTC (as everywhere in stalwart)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_time(value: datetime) -> str:
    # The text form SQLAlchemy's SQLite DATETIME uses: sortable, naive UTC.
    return _utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


def _json(value: Any) -> str:
    if isinstance(value, JsonText):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def driver_values(
    dialect: Dialect, name: str, rows: Sequence[Row]
) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """The columns of table ``name`` and each row's values in the form the driver takes.

    JSON as text and times as the dialect stores them, skipping SQLAlchemy's
    per-row type processing (the hot path of every batch).
    """
    statement = _compiled(dialect, name)
    to_time = _sqlite_time if dialect.name == "sqlite" else _utc
    keys, json_at, time_at = statement.keys, statement.json_at, statement.time_at
    params = []
    for row in rows:
        values = [row[k] for k in keys]
        for i in json_at:
            if values[i] is not None:
                values[i] = _json(values[i])
        for i in time_at:
            if values[i] is not None:
                values[i] = to_time(values[i])
        params.append(tuple(values))
    return keys, params


async def _execute(conn: AsyncConnection, name: str, rows: Sequence[Row]) -> None:
    """One statement per table through the driver, with :func:`driver_values`."""
    statement = _compiled(conn.dialect, name)
    _, params = driver_values(conn.dialect, name, rows)
    if conn.dialect.name != "postgresql":
        await conn.exec_driver_sql(statement.sql, params)
    elif name in _STAGED:
        await _copy_then_insert(conn, name, statement, params)
    else:
        # One array per column and ``unnest``: one statement, one round trip and
        # one prepared plan per table, whatever the batch size.
        columns = tuple(list(column) for column in zip(*params, strict=True))
        await conn.exec_driver_sql(_unnest(conn.dialect, name, statement), columns)


# The tables of every lifecycle batch; their rows go through a staging table.
_STAGED = frozenset({"messages", "transitions", "deliveries"})


async def _copy_then_insert(
    conn: AsyncConnection, name: str, statement: _Compiled, params: list[tuple[Any, ...]]
) -> None:
    """Binary ``COPY`` into ``stalwart_stage_<name>``, then insert from it with ``statement``
    (insert-only tables first try :func:`_copy_new_rows`).

    COPY costs the client and the server less than binding one array per
    column. The staging table has the target's column types, so a value too
    long is refused by the COPY as it would be by an insert; it lives as long
    as the connection and empties at every commit. Creating it, if need be,
    goes through SQLAlchemy first, which also opens the transaction the COPY
    then runs in.
    """
    if name in _APPEND_ONLY and await _copy_new_rows(conn, name, statement, params):
        return
    stage = f"stalwart_stage_{name}"
    await conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {name}) ON COMMIT DELETE ROWS"
    )
    driver = await _driver(conn)
    await driver.copy_records_to_table(stage, records=params, columns=list(statement.keys))
    await conn.exec_driver_sql(_from_stage(conn.dialect, name, statement))


# Insert-only tables: a batch goes straight in by COPY unless a row is already there.
_APPEND_ONLY = frozenset({"messages", "transitions"})
_UNIQUE_VIOLATION = "23505"


async def _copy_new_rows(
    conn: AsyncConnection, name: str, statement: _Compiled, params: list[tuple[Any, ...]]
) -> bool:
    """COPY ``params`` straight into ``name``; False (and nothing written) if one exists.

    A row already stored (a redelivered batch, a message forwarded twice) makes
    the COPY fail on the table's key; the savepoint takes the attempt back and
    the caller goes through the staging table, whose insert skips such rows.
    Usually every row is new, and this saves writing the batch twice.
    """
    await conn.exec_driver_sql("SAVEPOINT stalwart_copy")
    driver = await _driver(conn)
    try:
        await driver.copy_records_to_table(name, records=params, columns=list(statement.keys))
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
        await conn.exec_driver_sql("ROLLBACK TO SAVEPOINT stalwart_copy")
        return False
    await conn.exec_driver_sql("RELEASE SAVEPOINT stalwart_copy")
    return True


async def _driver(conn: AsyncConnection) -> Any:
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the PostgreSQL connection closed before the batch was copied")
    return driver


_from_stage_cache: dict[tuple[int, str], str] = {}


def _from_stage(dialect: Dialect, name: str, statement: _Compiled) -> str:
    """``statement`` reading its staging table's rows.

    A sequential scan of a temporary table filled in one go returns them in
    the order they were copied, so deliveries keep their sorted lock order.
    """
    key = (id(dialect), name)
    found = _from_stage_cache.get(key)
    if found is None:
        head, _, rest = statement.sql.partition(" VALUES (")
        _, _, tail = rest.partition(") ON CONFLICT")
        columns = ", ".join(statement.keys)
        found = f"{head} SELECT {columns} FROM stalwart_stage_{name} ON CONFLICT{tail}"
        _from_stage_cache[key] = found
    return found


_unnest_cache: dict[tuple[int, str], str] = {}


def _array_type(column_type: TypeEngine[Any], dialect: Dialect) -> str:
    """The element type of a parameter array: plain ``text`` for strings.

    An explicit cast to ``varchar(n)`` would silently truncate a value that is
    too long; from ``text`` the column's own assignment cast refuses it, as a
    ``VALUES`` insert does.
    """
    if isinstance(column_type, String):
        return "text"
    return column_type.compile(dialect=dialect)


def _unnest(dialect: Dialect, name: str, statement: _Compiled) -> str:
    """``INSERT ... SELECT * FROM unnest($1::type[], ...) ON CONFLICT ...`` for ``statement``."""
    key = (id(dialect), name)
    found = _unnest_cache.get(key)
    if found is None:
        table = next(t for t in _TABLES if t.name == name)
        types = [_array_type(table.c[k].type, dialect) for k in statement.keys]
        arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, start=1))
        head, _, rest = statement.sql.partition(" VALUES (")
        _, _, tail = rest.partition(") ON CONFLICT")
        found = f"{head} SELECT * FROM unnest({arrays}) ON CONFLICT{tail}"
        _unnest_cache[key] = found
    return found


async def write_rows(conn: AsyncConnection, rows: Rows) -> None:
    """Execute every statement of ``rows`` on ``conn`` (the caller owns the transaction)."""
    if rows.messages:
        await _execute(conn, "messages", rows.messages)
    if rows.transitions:
        await _execute(conn, "transitions", rows.transitions)
    if rows.deliveries:
        await _execute(conn, "deliveries", rows.sorted_deliveries())
    if rows.components:
        await _execute(conn, "components", rows.sorted_components())
    if rows.reports:
        await _execute(conn, "reports", rows.reports)


def is_unavailable(exc: BaseException) -> bool:
    """False only when the database refused the data itself (too long, bad type, conflict).

    Text the driver cannot encode (a lone surrogate from a JSON ``\\ud800``)
    is refused data too. Anything else (connection refused or lost, server
    restarting, database locked or missing, ...) counts as unavailable: the
    caller keeps the batch and retries, which loses nothing.
    """
    if isinstance(exc, UnicodeError):
        return False
    if isinstance(exc, DataError | IntegrityError):
        return bool(exc.connection_invalidated)
    # asyncpg's data errors (SQLSTATE class 22, e.g. a value too long) reach
    # SQLAlchemy as a plain DBAPIError, and come bare from a COPY on the driver's
    # own connection: tell them apart by their SQLSTATE.
    sqlstate = getattr(getattr(exc, "orig", exc), "sqlstate", None)
    if not (isinstance(sqlstate, str) and sqlstate[:2] in _REFUSED):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


_REFUSED = frozenset({"22", "23"})  # data exception, integrity constraint violation
