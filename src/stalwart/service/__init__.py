"""The service runtime: handlers by topic, retries, dead letters, heartbeats,
request/reply, idempotency and token checks on any bus transport."""

from stalwart.service._context import Context
from stalwart.service._control import Reject, Retry
from stalwart.service._events import EventPublisher
from stalwart.service._loader import load_service
from stalwart.service._process import serve, serve_many
from stalwart.service._runner import AckGuard, ServiceRunner
from stalwart.service._security import TokenAuthority, parse_ttl
from stalwart.service._service import Handler, Service

__all__ = [
    "AckGuard",
    "Context",
    "EventPublisher",
    "Handler",
    "Reject",
    "Retry",
    "Service",
    "ServiceRunner",
    "TokenAuthority",
    "load_service",
    "parse_ttl",
    "serve",
    "serve_many",
]
