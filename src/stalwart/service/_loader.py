"""Find a Service by ``module.path:attribute`` (for ``stalwart run`` and ``stalwart up``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from stalwart.errors import ConfigError
from stalwart.service._service import Service

__all__ = ["load_service"]


def load_service(target: str) -> Service:
    """Import ``module:attr`` (the current directory is importable) and return the Service."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{target!r} is not MODULE:SERVICE, e.g. myproject.services:qa")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}; check the module path") from None
    service = getattr(module, attribute, None)
    if not isinstance(service, Service):
        raise ConfigError(f"{target!r} is not a stalwart Service (found {type(service).__name__})")
    return service
