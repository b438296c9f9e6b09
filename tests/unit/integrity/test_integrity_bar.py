"""The integrity commands' progress bar: log lines printed above it, not glued onto it."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from stalwart.cli._integrity_view import byte_bar


def test_log_lines_go_through_the_bar_console() -> None:
    # Given a bar on a terminal, and logging configured as the CLI does
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    elsewhere = io.StringIO()
    handler = logging.StreamHandler(elsewhere)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [handler]
    try:
        # When a worker logs while the bar runs
        with byte_bar(terminal) as bar:
            bar.start("transfer f.bin", 100)
            bar.advance(50)
            logging.getLogger("stalwart.integrity.transfer").warning("ranged read failed")
        # Then the line is printed by the bar's console, whole and in the configured format
        assert "WARNING stalwart.integrity.transfer ranged read failed\n" in screen.getvalue()
        assert elsewhere.getvalue() == ""
        # And afterwards logging is as it was
        assert root.handlers == [handler]
    finally:
        root.handlers = saved


def test_a_bar_not_on_a_terminal_leaves_logging_alone() -> None:
    plain = Console(file=io.StringIO(), force_terminal=False)
    before = logging.getLogger().handlers[:]
    with byte_bar(plain):
        assert logging.getLogger().handlers == before
