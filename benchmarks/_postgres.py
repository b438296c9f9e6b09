"""A fresh PostgreSQL database on the shared server, dropped afterwards."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg

__all__ = ["POSTGRES", "fresh_database"]

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


@contextlib.contextmanager
def fresh_database(prefix: str = "stalwart_bench") -> Iterator[str]:
    """The URL of an empty database named ``<prefix>_<random>``, dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
