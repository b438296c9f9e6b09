"""Subjects, streams, consumers and headers of the nats transport on JetStream.

One place decides the layout, so that ``docs/wire-format.md``, the transport
and foreign clients agree: for namespace ``N`` (``bus.exchange``) and service
``S``

- ``N.<topic>``   the subject of every envelope on ``<topic>``, stored in the
                  work stream ``N`` (interest retention: a message stays until
                  every service it matched has settled it);
- ``N-to.S``      copies meant for ``S`` alone (a released delivery, a
                  requeued dead letter), in the same stream;
- ``N-dead.S``    dead letters of ``S``, in the stream ``N-dead``;
- consumers       durable pull consumers on ``N``, one per subject filter of
                  ``S`` (JetStream 2.9 filters one subject per consumer) plus
                  one on ``N-to.S``; each one's description records ``S``'s
                  queue settings, so the consumers are also the directory.

Patterns: ``*`` is NATS ``*``; a trailing ``#`` (zero or more words) is the
pair ``prefix`` and ``prefix.>``; a ``#`` elsewhere is filtered by the widest
NATS filter that covers it and checked word by word on delivery.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Final

from stalwart.bus._transport import QueueSpec
from stalwart.topics import Pattern

__all__ = [
    "ATTEMPT_HEADER",
    "DIED_AT_HEADER",
    "MSG_ID_HEADER",
    "QUEUE_HEADER",
    "REASON_HEADER",
    "TOPIC_HEADER",
    "Filter",
    "consumer_name",
    "dead_stream",
    "dead_subject",
    "direct_subject",
    "filters_of",
    "spec_from_description",
    "spec_to_description",
    "subject_matches",
    "topic_of",
    "topic_subject",
    "work_stream",
]

ATTEMPT_HEADER: Final = "x-stalwart-attempt"
REASON_HEADER: Final = "x-stalwart-reason"
QUEUE_HEADER: Final = "x-stalwart-queue"
DIED_AT_HEADER: Final = "x-stalwart-died-at"
TOPIC_HEADER: Final = "x-stalwart-topic"
MSG_ID_HEADER: Final = "Nats-Msg-Id"  # JetStream drops a repeat within the duplicate window

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def work_stream(namespace: str) -> str:
    return namespace


def dead_stream(namespace: str) -> str:
    return f"{namespace}-dead"


def topic_subject(namespace: str, topic: str) -> str:
    return f"{namespace}.{topic}"


def topic_of(namespace: str, subject: str) -> str:
    """The topic of a work-stream ``subject`` (the subject itself if it is not one)."""
    prefix = f"{namespace}."
    return subject[len(prefix) :] if subject.startswith(prefix) else subject


def direct_subject(namespace: str, service: str) -> str:
    return f"{namespace}-to.{service}"


def dead_subject(namespace: str, service: str) -> str:
    return f"{namespace}-dead.{service}"


@dataclass(frozen=True, slots=True)
class Filter:
    """One consumer's NATS subject filter and the stalwart pattern it serves
    (``pattern`` None: the service's direct subject, taken as it is)."""

    subject: str
    pattern: Pattern | None

    def accepts(self, namespace: str, subject: str) -> bool:
        """Whether a message on ``subject`` is this filter's to deliver."""
        if self.pattern is None:
            return True
        return subject_matches(self.subject, subject) and self.pattern.matches(
            topic_of(namespace, subject)
        )


def _nats_filters(namespace: str, pattern: str) -> list[str]:
    words = pattern.split(".")
    if "#" not in words:
        return [topic_subject(namespace, pattern)]
    prefix = words[: words.index("#")]
    if not prefix:
        return [f"{namespace}.>"]
    head = topic_subject(namespace, ".".join(prefix))
    return [head, f"{head}.>"]


def filters_of(namespace: str, spec: QueueSpec) -> list[Filter]:
    """The consumers' filters of ``spec``, in order, each subject once; the direct one last.

    A message that more than one filter takes is delivered by the first that
    accepts it (the others acknowledge it unseen), so a service gets one copy.
    """
    found: list[Filter] = []
    seen: set[str] = set()
    for text in spec.patterns:
        pattern = Pattern(text)
        for subject in _nats_filters(namespace, text):
            if subject not in seen:
                seen.add(subject)
                found.append(Filter(subject, pattern))
    found.append(Filter(direct_subject(namespace, spec.name), None))
    return found


def subject_matches(nats_filter: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` one token, a final ``>`` one or more."""
    want, have = nats_filter.split("."), subject.split(".")
    for index, word in enumerate(want):
        if word == ">":
            return len(have) > index
        if index >= len(have) or (word != "*" and word != have[index]):
            return False
    return len(want) == len(have)


def consumer_name(service: str, nats_filter: str) -> str:
    """A durable name unique to (service, filter), readable by its service part."""
    digest = hashlib.sha1(f"{service}\0{nats_filter}".encode()).hexdigest()[:12]
    return f"{_UNSAFE.sub('_', service)[:60]}_{digest}"


def spec_to_description(spec: QueueSpec) -> str:
    return json.dumps(
        {
            "stalwart": spec.name,
            "patterns": list(spec.patterns),
            "max_attempts": spec.max_attempts,
            "retry_initial": spec.retry_initial,
            "retry_max": spec.retry_max,
            "lease": spec.lease,
            "ephemeral": spec.ephemeral,
        },
        separators=(",", ":"),
    )


def spec_from_description(description: str | None) -> QueueSpec | None:
    """The queue settings a consumer's description records (None: not a stalwart one)."""
    try:
        data = json.loads(description or "")
        return QueueSpec(
            str(data["stalwart"]),
            tuple(str(p) for p in data["patterns"]),
            max_attempts=int(data["max_attempts"]),
            retry_initial=float(data["retry_initial"]),
            retry_max=float(data["retry_max"]),
            lease=float(data["lease"]),
            ephemeral=bool(data["ephemeral"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
