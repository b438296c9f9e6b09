"""stalwart: a resilient message-passing backbone for distributed scientific data processing."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from stalwart.envelope import DeliveryState, Envelope, Transition
    from stalwart.errors import StalwartError

__all__ = ["DeliveryState", "Envelope", "StalwartError", "Transition"]
__version__ = "0.1.0"

# Imported on first use, so that importing any stalwart module (the CLI's
# ``--help`` above all) does not load pydantic through the envelope.
_EXPORTS: Final = {
    "DeliveryState": "stalwart.envelope",
    "Envelope": "stalwart.envelope",
    "Transition": "stalwart.envelope",
    "StalwartError": "stalwart.errors",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stalwart' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
