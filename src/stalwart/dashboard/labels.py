"""Bounded label values for ``/metrics``: a time series per value must not grow
without limit, whatever is published on the bus.

Per-instance reply topics (``sys.reply.<service>.<instance>``) are grouped as
``sys.reply.*``, and each label keeps at most ``limit`` distinct values: the
first seen keep their own series, later ones (forged names, a flood of
topics) are counted under ``other``.
"""

from __future__ import annotations

__all__ = ["OTHER", "LabelCap", "topic_label"]

OTHER = "other"
_REPLY = "sys.reply."


def topic_label(topic: str) -> str:
    """The label value of ``topic``: reply topics grouped as one."""
    return _REPLY + "*" if topic.startswith(_REPLY) else topic


class LabelCap:
    """At most ``limit`` distinct values of one label; the rest become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: set[str] = set()
        self.refused = 0

    def __call__(self, value: str) -> str:
        if value in self._known:
            return value
        if len(self._known) < self.limit:
            self._known.add(value)
            return value
        self.refused += 1
        return OTHER
