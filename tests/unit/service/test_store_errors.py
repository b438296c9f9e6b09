"""Which database errors count as the store being away (retried as "store unavailable")."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from stalwart.service.claims import _is_connection_error


class _DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "away"),
    [
        ("57P01", True),  # admin shutdown: the server is stopping
        ("57P03", True),  # cannot connect now: the server is starting
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("23505", False),  # unique violation: the handler's own data
        ("42P01", False),  # undefined table: a bug, not an outage
    ],
)
def test_sqlstate_decides_whether_the_store_is_away(sqlstate: str, away: bool) -> None:
    error = DBAPIError("SELECT 1", None, _DriverError(sqlstate))
    assert _is_connection_error(error) is away
