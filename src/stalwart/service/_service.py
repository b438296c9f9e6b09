"""A service: a logical name with one durable queue and handlers by topic pattern."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from stalwart.bus import QueueSpec
from stalwart.errors import ConfigError
from stalwart.topics import Pattern

if TYPE_CHECKING:
    from stalwart.config import Settings
    from stalwart.service._context import Context

__all__ = ["Handler", "HandlerFunc", "Service"]

HandlerFunc = Callable[["Context", Any], Awaitable[Any]]
_F = TypeVar("_F", bound=HandlerFunc)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True, slots=True)
class Handler:
    """One handler: which messages it takes and how they are checked."""

    pattern: Pattern
    func: HandlerFunc
    body: type[BaseModel] | None
    kinds: frozenset[str] | None
    idempotent: bool
    timeout: float | None
    roles: tuple[str, ...]

    def accepts_kind(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


class Service:
    """Declare handlers with :meth:`handler`; run with :meth:`run` or ``stalwart run``.

    Instances of one service compete for its queue's messages; another service
    bound to the same topics gets its own copy.
    """

    def __init__(
        self,
        name: str,
        *,
        site: str | None = None,
        concurrency: int = 16,
        heartbeat_interval: float = 1.0,
        max_attempts: int | None = None,
        lease: float | None = None,
        grace: float = 10.0,
    ) -> None:
        if not _NAME.match(name):
            raise ConfigError(
                f"service name {name!r} must be lower-case letters, digits, '_' or '-'"
            )
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1")
        self.name = name
        self.site = site
        self.concurrency = concurrency
        self.heartbeat_interval = heartbeat_interval
        self.max_attempts = max_attempts
        self.lease = lease
        self.grace = grace
        self.handlers: list[Handler] = []

    def handler(
        self,
        pattern: str,
        *,
        body: type[BaseModel] | None = None,
        kinds: Sequence[str] | None = None,
        idempotent: bool = False,
        timeout: float | None = None,
        roles: Sequence[str] = (),
    ) -> Callable[[_F], _F]:
        """Register ``async def f(ctx, body)`` for topics matching ``pattern``.

        ``body``: a pydantic model the JSON body must validate against (else
        the message is rejected); its class name is the accepted kind unless
        ``kinds`` says otherwise. ``idempotent``: a message id already
        processed by this service is acked without running ``f`` again.
        ``timeout``: seconds before ``f`` is cancelled and the attempt fails.
        ``roles``: the message's token must carry all of them.
        """

        def register(func: _F) -> _F:
            accepted = kinds if kinds is not None else ((body.__name__,) if body else None)
            self.handlers.append(
                Handler(
                    pattern=Pattern(pattern),
                    func=func,
                    body=body,
                    kinds=frozenset(accepted) if accepted is not None else None,
                    idempotent=idempotent,
                    timeout=timeout,
                    roles=tuple(roles),
                )
            )
            return func

        return register

    def route(self, topic: str) -> list[Handler]:
        """Handlers whose pattern matches ``topic``, in declaration order."""
        return [h for h in self.handlers if h.pattern.matches(topic)]

    def queue_spec(self, settings: Settings) -> QueueSpec:
        if not self.handlers:
            raise ConfigError(f"service {self.name!r} has no handlers; add @service.handler(...)")
        patterns = tuple(dict.fromkeys(h.pattern.text for h in self.handlers))
        bus = settings.bus
        return QueueSpec(
            name=self.name,
            patterns=patterns,
            max_attempts=self.max_attempts or bus.max_attempts,
            retry_initial=bus.retry_initial,
            retry_max=bus.retry_max,
            lease=self.lease or bus.lease,
        )

    def __repr__(self) -> str:
        return f"Service({self.name!r}, handlers={len(self.handlers)})"
