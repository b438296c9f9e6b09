"""Process logging: JSON lines that survive any message, stderr as it is now."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from stalwart.config import Settings
from stalwart.logs import configure_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _settings(log_format: str) -> Settings:
    return Settings.model_validate({"log_format": log_format, "log_level": "INFO"})


def test_a_json_line_holds_any_message_and_masks_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    configure_logging(_settings("json"))
    log = logging.LoggerAdapter(logging.getLogger("stalwart.t"), {"message_id": "m-1"})
    # When a message holds quotes, a newline and a URL with a password, with a traceback
    try:
        raise ValueError('bad "value"')
    except ValueError:
        log.exception('said "hi"\nto amqp://ops:s3cret@rabbit:5672/')
    # Then the output is one JSON object on one line, with every part readable
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["msg"] == 'said "hi"\nto amqp://ops:***@rabbit:5672/'
    assert record["level"] == "ERROR" and record["logger"] == "stalwart.t"
    assert record["message_id"] == "m-1"
    assert 'ValueError: bad "value"' in record["exc"]
    assert "s3cret" not in lines[0]


def test_records_go_to_stderr_as_it_is_when_they_are_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given logging configured while stderr was one stream, which is then closed
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging(_settings("text"))
    first.close()
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    # When a record is written
    logging.getLogger("stalwart.t").warning("after the swap")
    # Then it lands on the current stderr, without a logging error
    written = second.getvalue()
    assert "Logging error" not in written
    assert written.rstrip().endswith("WARNING stalwart.t after the swap")
