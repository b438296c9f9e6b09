"""Token buckets and the 429 middleware."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from stalwart.dashboard.ratelimit import RateLimiter, RateLimitMiddleware, Rule


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    # Given a bucket of 3 refilled at 2 per second
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    # When 4 requests come at once, Then the 4th must wait half a second
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == 0.5
    # And other clients are not affected
    assert limiter.take("b") == 0.0
    # When half a second passes, Then one more is allowed
    clock.now = 0.5
    assert limiter.take("a") == 0.0
    assert limiter.refused == 1


def test_the_table_of_clients_is_bounded() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_keys=10, clock=Clock())
    for i in range(100):
        limiter.take(f"client-{i}")
    assert len(limiter._buckets) == 10


async def test_the_middleware_answers_429_with_retry_after_on_matching_paths() -> None:
    # Given an app limiting /api/ to a burst of 2
    async def ok(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/api/x", ok), Route("/page", ok)])
    limited = RateLimitMiddleware(app, rules=(Rule("/api/", RateLimiter(0.1, 2)),))
    transport = httpx.ASGITransport(app=limited)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # When a client calls it three times
        codes = [(await client.get("/api/x")).status_code for _ in range(3)]
        # Then the third is refused with a hint, and other paths are not limited
        assert codes == [200, 200, 429]
        refused = await client.get("/api/x")
        assert int(refused.headers["retry-after"]) >= 1
        assert "retry after" in refused.json()["detail"]
        assert (await client.get("/page")).status_code == 200
