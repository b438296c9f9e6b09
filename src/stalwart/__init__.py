"""stalwart: a resilient message-passing backbone for distributed scientific data processing."""

from stalwart.envelope import DeliveryState, Envelope, Transition
from stalwart.errors import StalwartError

__all__ = ["DeliveryState", "Envelope", "StalwartError", "Transition"]
__version__ = "0.1.0"
