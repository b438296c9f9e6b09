"""Logging for stalwart's processes: the command, the watchdog, HA replicas.

The library never configures logging; a process does, once, here: the
configured level and format (text, or JSON lines written by a JSON encoder, so
that quotes, newlines and tracebacks in a message never break a line) on
stderr, every URL's password masked whichever library wrote the line, and
client libraries that log each failed connect kept quiet (stalwart says it
once, with advice).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

from stalwart.config import Settings
from stalwart.redact import redact_url

__all__ = ["configure_logging"]

_NOISY = ("aiormq", "aio_pika", "alembic")
# Fields a handler's LoggerAdapter adds to its records (see Context.log).
_CONTEXT_FIELDS = ("message_id", "topic")


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


class _JsonLines(logging.Formatter):
    """One JSON object per record: time, level, logger, message, context, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "t": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_url(record.getMessage()),
        }
        for field in _CONTEXT_FIELDS:
            if hasattr(record, field):
                line[field] = getattr(record, field)
        if record.exc_info:
            line["exc"] = redact_url(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record: a test runner or an
    in-process CLI runner may swap it and close the old one."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """StreamHandler sets its stream once; the property always answers the current one."""


def configure_logging(settings: Settings) -> None:
    """Configure the root logger of this process from ``settings``."""
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    handler = _Stderr()
    handler.setFormatter(
        _JsonLines()
        if settings.log_format == "json"
        else _Redacting("%(asctime)s %(levelname)s %(name)s %(message)s")
    )
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.CRITICAL))
