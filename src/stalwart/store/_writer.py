"""Write a batch of rows in one transaction, idempotently, on SQLite or PostgreSQL.

Messages, transitions and reports are inserted with ``ON CONFLICT DO
NOTHING``; deliveries are upserted with the forward-only join of
:func:`stalwart.store._rows.fold_transition`, done in SQL; components keep
the newest heartbeat. Applying the same batch twice changes nothing.

On PostgreSQL, rows not stored yet go in by binary ``COPY`` straight into
their tables: the batch's messages, transitions, and the deliveries no
earlier batch stored (a query on their keys tells them apart), as long as
none of these turns out to be stored (the usual case). The others go by
``COPY`` into a session's temporary staging table, then ``INSERT ... SELECT``
from it with the same conflict handling (for deliveries, the forward-only
merge). The few components and
reports go in by ``INSERT ... SELECT ... FROM unnest(...)``. Every statement
is a SQLAlchemy construct, compiled once per dialect and driver; rows are
passed to the driver as tuples, without SQLAlchemy's per-row processing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    Column,
    ColumnElement,
    Dialect,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.schema import CreateTable
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


def _delivery_upsert(stmt: Any, dialect: str) -> Any:
    """``stmt`` (an insert into deliveries) merging forward-only into a stored row."""
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


def _component_upsert(stmt: Any, dialect: str) -> Any:
    """``stmt`` (an insert into components) keeping the newest heartbeat."""
    keys = {"service", "instance"}
    return stmt.on_conflict_do_update(
        index_elements=["service", "instance"],
        set_={c.name: stmt.excluded[c.name] for c in components.c if c.name not in keys},
        where=stmt.excluded.last_heartbeat > components.c.last_heartbeat,
    )


_JSON_COLUMNS = frozenset({"headers", "body", "refs", "patterns"})
_TIME_COLUMNS = frozenset(c.name for t in _TABLES for c in t.c if isinstance(c.type, UtcDateTime))
_BY_NAME = {t.name: t for t in _TABLES}


@dataclass(frozen=True, slots=True)
class _Compiled:
    """SQL text for the driver, its parameter order, and which parameters need converting."""

    sql: str
    keys: tuple[str, ...]
    json_at: tuple[int, ...]
    time_at: tuple[int, ...]


_CONFLICT: dict[str, Callable[[Any, str], Any]] = {
    "messages": lambda stmt, _: stmt.on_conflict_do_nothing(),
    "transitions": lambda stmt, _: stmt.on_conflict_do_nothing(),
    "deliveries": _delivery_upsert,
    "components": _component_upsert,
    "reports": lambda stmt, _: stmt.on_conflict_do_nothing(),
}

# Compiled SQL by (dialect, driver, kind, table): the same text for every engine
# of one dialect and driver, so it is compiled once per process.
_cache: dict[tuple[str, str, str, str], Any] = {}


def _cached(dialect: Dialect, kind: str, name: str, make: Callable[[], Any]) -> Any:
    key = (dialect.name, dialect.driver, kind, name)
    found = _cache.get(key)
    if found is None:
        found = _cache[key] = make()
    return found


def _compiled(dialect: Dialect, name: str) -> _Compiled:
    """Table ``name``'s ``INSERT ... VALUES ... ON CONFLICT``, with its parameters' order."""

    def make() -> _Compiled:
        table = _BY_NAME[name]
        stmt = _CONFLICT[name](_insert_for(dialect.name)(table), dialect.name)
        compiled = stmt.compile(dialect=dialect)
        keys = tuple(compiled.positiontup or ())
        return _Compiled(
            str(compiled),
            keys,
            tuple(i for i, k in enumerate(keys) if k in _JSON_COLUMNS),
            tuple(i for i, k in enumerate(keys) if k in _TIME_COLUMNS),
        )

    found: _Compiled = _cached(dialect, "values", name, make)
    return found


def _utc(value: datetime) -> datetime:
    """Aware UTC; a naive time is taken as UTC (as everywhere in stalwart)."""
    if value.tzinfo is UTC:
        return value
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
    pick = itemgetter(*keys)
    params = []
    for row in rows:
        values = list(pick(row))
        for i in json_at:
            if values[i] is not None:
                values[i] = _json(values[i])
        for i in time_at:
            if values[i] is not None:
                values[i] = to_time(values[i])
        params.append(tuple(values))
    return keys, params


def _tables(rows: Rows) -> list[tuple[str, Sequence[Row]]]:
    """The batch's non-empty tables, deliveries and components in key order."""
    tables = (
        ("messages", rows.messages),
        ("transitions", rows.transitions),
        ("deliveries", rows.sorted_deliveries()),
        ("components", rows.sorted_components()),
        ("reports", rows.reports),
    )
    return [(name, table_rows) for name, table_rows in tables if table_rows]


_UNIQUE_VIOLATION = "23505"


async def _write_postgres(conn: AsyncConnection, rows: Rows) -> None:
    """Rows not stored yet by COPY straight into their tables, the others merged.

    Under one savepoint: messages and transitions are copied straight in,
    then one query tells which deliveries an earlier batch stored, and the
    others are copied straight in too. Usually none of the messages and
    transitions is stored, and the batch has already folded each delivery's
    transitions into one row, so only the stored deliveries need the merge:
    the forward-only upsert through the staging table. Should a row turn out
    to be stored after all (a redelivered batch, a message forwarded twice,
    another writer's delivery), its COPY fails on the key, the savepoint takes
    the copies back, and these three tables go through the staging table with
    their conflict handling. Deliveries keep the batch's key order (the order
    rows are locked in) either way.
    """
    batch = {
        name: (_compiled(conn.dialect, name), driver_values(conn.dialect, name, table_rows)[1])
        for name, table_rows in _tables(rows)
    }
    merged: dict[str, list[tuple[Any, ...]]] = {}
    driver = await _driver(conn)
    try:
        async with conn.begin_nested():
            for name in ("messages", "transitions", "deliveries"):
                if name not in batch:
                    continue
                statement, params = batch[name]
                if name == "deliveries":
                    params, merged[name] = await _split_stored(conn, statement, params)
                if params:
                    await driver.copy_records_to_table(
                        name, records=params, columns=list(statement.keys)
                    )
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
        merged = {n: batch[n][1] for n in ("messages", "transitions", "deliveries") if n in batch}
    for name, params in merged.items():
        if params:
            await _copy_then_insert(conn, name, batch[name][0], params)
    for name in ("components", "reports"):
        if name in batch:
            # One array per column and ``unnest``: one statement, one round trip
            # and one prepared plan per table, whatever the batch size.
            statement, params = batch[name]
            columns = tuple(list(column) for column in zip(*params, strict=True))
            await conn.exec_driver_sql(_unnest(conn.dialect, name, statement), columns)


async def _split_stored(
    conn: AsyncConnection, statement: _Compiled, params: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Deliveries ``params`` split into (not stored yet, stored), each in its given order.

    Asking costs an index probe per delivery and spares the new ones the
    staging table and the upsert.
    """
    at = statement.keys.index("message_id"), statement.keys.index("service")
    result = await conn.execute(
        _STORED_DELIVERIES,
        {"ids": [p[at[0]] for p in params], "services": [p[at[1]] for p in params]},
    )
    stored = {(message_id, service) for message_id, service in result}
    new = [p for p in params if (p[at[0]], p[at[1]]) not in stored]
    return new, [p for p in params if (p[at[0]], p[at[1]]) in stored]


def _stored_deliveries() -> Any:
    """Which of the keys in the arrays ``ids`` and ``services`` are in ``deliveries``."""
    keys = (
        func.unnest(bindparam("ids", type_=ARRAY(Text)), bindparam("services", type_=ARRAY(Text)))
        .table_valued("message_id", "service")
        .render_derived()
    )
    d = deliveries.c
    on = and_(d.message_id == keys.c.message_id, d.service == keys.c.service)
    return select(d.message_id, d.service).join_from(deliveries, keys, on)


_STORED_DELIVERIES = _stored_deliveries()


async def _copy_then_insert(
    conn: AsyncConnection, name: str, statement: _Compiled, params: list[tuple[Any, ...]]
) -> None:
    """Binary ``COPY`` into ``stalwart_stage_<name>``, then insert from it with the
    table's conflict handling.

    COPY costs the client and the server less than binding one array per
    column. The staging table has the target's column types, so a value too
    long is refused by the COPY as it would be by an insert; it lives as long
    as the connection and empties at every commit. Creating it, if need be,
    goes through SQLAlchemy first, which also opens the transaction the COPY
    then runs in.
    """
    create, insert = _staged(conn.dialect, name, statement)
    await conn.exec_driver_sql(create)
    driver = await _driver(conn)
    await driver.copy_records_to_table(
        _stage_name(name), records=params, columns=list(statement.keys)
    )
    await conn.exec_driver_sql(insert)


async def _driver(conn: AsyncConnection) -> Any:
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None:
        raise RuntimeError("the PostgreSQL connection closed before the batch was copied")
    return driver


def _stage_name(name: str) -> str:
    return f"stalwart_stage_{name}"


def _staged(dialect: Dialect, name: str, statement: _Compiled) -> tuple[str, str]:
    """``CREATE TEMPORARY TABLE IF NOT EXISTS`` the staging table of ``name``, and the
    insert of its rows into ``name`` with the table's conflict handling.

    A sequential scan of a temporary table filled in one go returns them in
    the order they were copied, so deliveries keep their sorted lock order.
    """

    def make() -> tuple[str, str]:
        table = _BY_NAME[name]
        stage = Table(
            _stage_name(name),
            MetaData(),
            *(Column(k, table.c[k].type, nullable=table.c[k].nullable) for k in statement.keys),
            prefixes=["TEMPORARY"],
            postgresql_on_commit="DELETE ROWS",
        )
        rows = select(*(stage.c[k] for k in statement.keys))
        insert = _CONFLICT[name](
            _insert_for(dialect.name)(table).from_select(statement.keys, rows), dialect.name
        )
        create = CreateTable(stage, if_not_exists=True)
        return str(create.compile(dialect=dialect)), str(insert.compile(dialect=dialect))

    found: tuple[str, str] = _cached(dialect, "staged", name, make)
    return found


def _array_type(column_type: TypeEngine[Any]) -> TypeEngine[Any]:
    """The element type of a parameter array: plain ``text`` for strings.

    An explicit cast to ``varchar(n)`` would silently truncate a value that is
    too long; from ``text`` the column's own assignment cast refuses it, as a
    ``VALUES`` insert does.
    """
    return Text() if isinstance(column_type, String) else column_type


def _unnest(dialect: Dialect, name: str, statement: _Compiled) -> str:
    """``INSERT ... SELECT ... FROM unnest($1::type[], ...) ON CONFLICT ...`` for ``name``."""

    def make() -> str:
        table = _BY_NAME[name]
        arrays = [
            bindparam(f"a{i}", type_=ARRAY(_array_type(table.c[k].type)))
            for i, k in enumerate(statement.keys)
        ]
        rows = func.unnest(*arrays).table_valued(*statement.keys).render_derived()
        insert = _CONFLICT[name](
            _insert_for(dialect.name)(table).from_select(
                statement.keys, select(*(rows.c[k] for k in statement.keys))
            ),
            dialect.name,
        )
        return str(insert.compile(dialect=dialect))

    found: str = _cached(dialect, "unnest", name, make)
    return found


async def write_rows(conn: AsyncConnection, rows: Rows) -> None:
    """Execute every statement of ``rows`` on ``conn`` (the caller owns the transaction)."""
    if conn.dialect.name == "postgresql":
        await _write_postgres(conn, rows)
        return
    for name, table_rows in _tables(rows):
        _, params = driver_values(conn.dialect, name, table_rows)
        await conn.exec_driver_sql(_compiled(conn.dialect, name).sql, params)


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
