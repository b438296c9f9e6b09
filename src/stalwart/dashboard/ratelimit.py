"""Per-client token buckets, applied as ASGI middleware to the API and login.

A pure ASGI middleware (not ``BaseHTTPMiddleware``) so that it never buffers
the live SSE stream. Clients are keyed by peer address; the table of buckets
is bounded so that a flood of addresses cannot grow memory without limit.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RateLimitMiddleware", "RateLimiter", "Rule"]


class RateLimiter:
    """Token buckets of ``burst`` tokens refilled at ``rate`` per second, per key."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.refused = 0

    def take(self, key: str) -> float:
        """0.0 if a request from ``key`` may go now, else seconds until it may."""
        now = self._clock()
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
            self.refused += 1
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait


@dataclass(frozen=True, slots=True)
class Rule:
    """Requests whose path starts with ``prefix`` (and, if set, use ``method``)."""

    prefix: str
    limiter: RateLimiter
    method: str | None = None

    def applies(self, path: str, method: str) -> bool:
        return path.startswith(self.prefix) and (self.method is None or self.method == method)


class RateLimitMiddleware:
    """Answers 429 with ``Retry-After`` when a client exceeds a rule's bucket."""

    def __init__(self, app: ASGIApp, rules: tuple[Rule, ...]) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client[0] if client else "unknown"
        for rule in self.rules:
            if rule.applies(scope["path"], scope["method"]):
                wait = rule.limiter.take(key)
                if wait > 0:
                    await _too_many(send, wait)
                    return
        await self.app(scope, receive, send)


async def _too_many(send: Send, wait: float) -> None:
    body = json.dumps(
        {"detail": f"too many requests: retry after {math.ceil(wait)} s or slow down"}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
