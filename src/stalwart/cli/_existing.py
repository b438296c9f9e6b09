"""Refuse to read an embedded bus or store that does not exist, rather than create it.

SQLite creates a database file when it is opened, so a command run outside
the system's directory would silently make an empty bus or store (and a
``.stalwart`` home) wherever it is run, and then report that nothing happened.
Only the default home (``.stalwart`` in the working directory) is guarded: a
home named by --config or STALWART_HOME is where the user wants it.
"""

from __future__ import annotations

from pathlib import Path

from stalwart.config import DEFAULT_HOME, Settings
from stalwart.errors import StalwartError

__all__ = ["NothingHere", "refuse_missing"]


class NothingHere(StalwartError):
    """A command that reads the bus or the store was run where neither exists."""


def refuse_missing(settings: Settings, url: str, what: str) -> None:
    """Raise NothingHere when ``url`` names a SQLite file that does not exist in the
    default home."""
    from sqlalchemy.engine import make_url  # not on `send`'s import path: start-up time

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    path = Path(parsed.database).absolute()
    in_default_home = Path(settings.home) == DEFAULT_HOME and path.is_relative_to(
        DEFAULT_HOME.absolute()
    )
    if in_default_home and not path.exists():
        raise NothingHere(
            f"no {what} at {path}: nothing has been recorded here. Run the command where "
            "the system's stalwart.toml is (the default home is .stalwart in the working "
            "directory), or pass --config or set STALWART_HOME"
        )
