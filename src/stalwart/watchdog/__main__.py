"""``python -m stalwart.watchdog [-c stalwart.toml]``: the watchdog without the full CLI.

Starts faster and loads less than ``stalwart watchdog`` (no web or service
modules), which suits a systemd unit or a container's init.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from stalwart.config import load_settings
from stalwart.errors import StalwartError, exit_status
from stalwart.logs import configure_logging
from stalwart.watchdog.supervisor import serve

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stalwart.watchdog", description=__doc__)
    parser.add_argument("-c", "--config", help="stalwart.toml (default: ./stalwart.toml)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except StalwartError as exc:
        return _failed(exc)
    configure_logging(settings)
    try:
        asyncio.run(serve(settings))
    except StalwartError as exc:
        return _failed(exc)
    return 0


def _failed(exc: StalwartError) -> int:
    """One line on stderr; 78 for a configuration error, so that systemd's
    ``RestartPreventExitStatus=78`` keeps it from restarting in vain."""
    print(f"error: {exc}", file=sys.stderr)
    return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
