"""Fuzz the JSON API from its own OpenAPI schema: no input makes it fail with a 500,
and every status it answers is one its schema documents for that operation.

The dashboard runs for real (uvicorn, the embedded bus, a SQLite store with a
few messages) in a thread of its own, and schemathesis calls it over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from dashboard_system import free_port, server_settings
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from stalwart.bus import open_transport
from stalwart.config import Settings
from stalwart.dashboard import create_app, serve_dashboard
from stalwart.envelope import Envelope
from stalwart.store import Store

pytestmark = pytest.mark.slow


async def _seed(settings: Settings) -> None:
    """A few stored messages, so detail and paging have something to return."""
    store = await Store.open(settings.store.url)
    try:
        parent = Envelope.new("fuzz.seed", {"n": 0}, correlation_id="c-1")
        child = Envelope.new("fuzz.child", {"n": 1}, causation_id=parent.id)
        await store.write([parent, child])
    finally:
        await store.close()
    transport = open_transport(settings.bus.url)
    await transport.start()
    await transport.close()


@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    home: Path = tmp_path_factory.mktemp("fuzz")
    return server_settings(home, rate_limit=10_000.0, rate_burst=10_000)


@pytest.fixture(scope="module")
def dashboard_url(fuzz_settings: Settings) -> Iterator[str]:
    settings = fuzz_settings
    bind = f"127.0.0.1:{free_port()}"
    ready = threading.Event()
    state: dict[str, object] = {}

    async def main() -> None:
        await _seed(settings)
        stop = asyncio.Event()
        state["loop"], state["stop"] = asyncio.get_running_loop(), stop
        await serve_dashboard(settings, bind, stop, on_ready=lambda _url: ready.set())

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="dashboard-fuzz", daemon=True)
    thread.start()
    assert ready.wait(30), "the dashboard did not start within 30 s"
    assert "error" not in state, state.get("error")
    try:
        yield f"http://{bind}"
    finally:
        loop = state["loop"]
        stop = state["stop"]
        assert isinstance(loop, asyncio.AbstractEventLoop) and isinstance(stop, asyncio.Event)
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        assert not thread.is_alive(), "the dashboard did not stop within 30 s"


def test_no_input_makes_the_api_fail(dashboard_url: str, fuzz_settings: Settings) -> None:
    # Given every operation of the API's own schema, which lists every /api/ route
    api = schemathesis.openapi.from_url(f"{dashboard_url}/api/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    served = {
        (method, route.path_format)
        for route in iter_route_contexts(create_app(fuzz_settings).routes)
        if isinstance(route.route, APIRoute) and route.path.startswith("/api/")
        for method in route.methods or ()
    }
    assert {(op.method.upper(), op.path) for op in operations} == served
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: schemathesis.Case) -> None:
            # When any request it allows (and many it does not) is sent,
            # Then the answer is never a server error, and its status is documented
            case.call_and_validate(
                base_url=dashboard_url, checks=[not_a_server_error, status_code_conformance]
            )

        try:
            check()
        except Exception as exc:  # every operation is fuzzed; all failures are reported
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
