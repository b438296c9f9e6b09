"""Logging for stalwart's processes: the command, the watchdog, HA replicas.

The library never configures logging; a process does, once, here: the
configured level and format (text or JSON lines) on stderr, every URL's
password masked whichever library wrote the line, and client libraries that
log each failed connect kept quiet (stalwart says it once, with advice).
"""

from __future__ import annotations

import logging
import sys

from stalwart.config import Settings
from stalwart.redact import redact_url

__all__ = ["configure_logging"]

_NOISY = ("aiormq", "aio_pika", "alembic")


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


def configure_logging(settings: Settings) -> None:
    """Configure the root logger of this process from ``settings``."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    fmt = (
        '{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
        if settings.log_format == "json"
        else "%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Redacting(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.CRITICAL))
