"""A failing store answers with a status that says whom to blame, not always 503."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from stalwart.config import Settings
from stalwart.dashboard import create_app
from stalwart.dashboard.http_status import http_status
from stalwart.dashboard.layout import LayoutError
from stalwart.errors import (
    BrokerUnavailable,
    ConfigError,
    DecodeError,
    NotAuthorised,
    StalwartError,
    StoreUnavailable,
    TopicError,
)
from stalwart.store import StoreDataError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TopicError("bad pattern"), 400),
        (DecodeError("not an envelope"), 400),
        (NotAuthorised("no role"), 403),
        (StoreUnavailable("database is away"), 503),
        (BrokerUnavailable("broker is away"), 503),
        (LayoutError("dot is missing"), 503),
        (StoreDataError("a row the store cannot read"), 500),
        (ConfigError("set [dashboard] secret"), 500),
    ],
)
def test_each_kind_of_error_has_its_status(error: StalwartError, status: int) -> None:
    assert http_status(error) == status


class _Failing:
    """A data source whose every query raises ``error``."""

    def __init__(self, error: StalwartError) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return fail


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (StoreUnavailable("database is away"), 503),
        (TopicError("bad pattern"), 400),
        (StoreDataError("a row the store cannot read"), 500),
    ],
)
async def test_the_api_answers_a_store_error_with_its_status(
    tmp_path: Path, error: StalwartError, status: int
) -> None:
    # Given a dashboard whose store fails with `error`
    app = create_app(Settings(home=tmp_path), source=_Failing(error))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8321") as client:
        # When the API asks it, Then the status names the cause and the detail says it
        for path in ("/api/components", "/api/reports"):
            response = await client.get(path)
            assert response.status_code == status, (path, response.text)
            assert response.json()["detail"] == str(error)


def test_the_schema_documents_400_and_503_where_they_can_happen(tmp_path: Path) -> None:
    schema = create_app(Settings(home=tmp_path)).openapi()
    answers = schema["paths"]["/api/messages"]["get"]["responses"]
    assert {"400", "503"} <= set(answers)
    assert "503" in schema["paths"]["/api/queues"]["get"]["responses"]
