"""Open a transport from its URL: ``sqlite://``, ``amqp://`` / ``amqps://`` or ``nats://``."""

from __future__ import annotations

import importlib
from typing import Any, cast

from stalwart.bus._transport import Transport
from stalwart.errors import ConfigError
from stalwart.redact import redact_url

__all__ = ["open_transport", "redact_url"]

# Imported by name so a process loads only the client library it uses.
_BACKENDS = {
    "sqlite": "stalwart.bus.sqlite:SqliteTransport",
    "amqp": "stalwart.bus.amqp:AmqpTransport",
    "amqps": "stalwart.bus.amqp:AmqpTransport",
    "nats": "stalwart.bus.nats:NatsTransport",
}


def open_transport(url: str, **options: Any) -> Transport:
    """A not-yet-started transport for ``url``; ``options`` go to its constructor.

    Common options: ``max_message_size`` (bytes). Each backend documents its own.
    """
    scheme = url.split("://", 1)[0].split(",", 1)[0].lower() if "://" in url else ""
    target = _BACKENDS.get(scheme)
    if target is None:
        known = ", ".join(sorted(_BACKENDS))
        raise ConfigError(
            f"unknown bus URL scheme in {redact_url(url)!r}: use one of {known} "
            "(e.g. sqlite:///.stalwart/bus.db or amqp://guest:guest@127.0.0.1:5672/)"
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cast(Transport, cls(url, **options))
