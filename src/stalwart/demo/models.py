"""Message bodies of the demonstration workflow: units of work (OUSes) moving
from ReadyForProcessing to Delivered across processing sites."""

from __future__ import annotations

import enum
from typing import Final

from pydantic import BaseModel, ConfigDict

__all__ = [
    "SITES",
    "CalibrationCheck",
    "CalibrationScore",
    "ProcessRequest",
    "ProcessResult",
    "StateChange",
    "UnitReady",
    "UnitState",
]

SITES: Final = ("jao", "eu", "na", "ea")


class UnitState(enum.StrEnum):
    READY_FOR_PROCESSING = "ReadyForProcessing"
    PROCESSING = "Processing"
    PROCESSING_PROBLEM = "ProcessingProblem"
    READY_FOR_REVIEW = "ReadyForReview"
    VERIFIED = "Verified"
    DELIVERY_IN_PROGRESS = "DeliveryInProgress"
    DELIVERED = "Delivered"


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


class UnitReady(_Body):
    """A unit of work is ready for processing; its product will be ``size_kib`` KiB."""

    ous: str
    project: str
    size_kib: int


class ProcessRequest(_Body):
    ous: str
    project: str
    site: str
    size_kib: int


class ProcessResult(_Body):
    ous: str
    site: str
    ok: bool
    products: list[str]
    detail: str = ""


class CalibrationCheck(_Body):
    ous: str
    site: str


class CalibrationScore(_Body):
    ous: str
    score: float


class StateChange(_Body):
    """The state of a unit changed; the tracker keeps the table."""

    ous: str
    state: UnitState
    site: str | None = None
    reason: str = ""
