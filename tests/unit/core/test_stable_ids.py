"""Stable ids: the same parts give the same UUIDv7, at the time given."""

from __future__ import annotations

import uuid

from stalwart.ids import id_time, new_id, stable_id


def test_the_same_parts_give_the_same_id_and_others_another() -> None:
    cause = new_id()
    first = stable_id(1_700_000_000_123, cause, "pipeline-eu", "review")
    assert first == stable_id(1_700_000_000_123, cause, "pipeline-eu", "review")
    others = {
        stable_id(1_700_000_000_123, new_id(), "pipeline-eu", "review"),
        stable_id(1_700_000_000_123, cause, "pipeline-na", "review"),
        stable_id(1_700_000_000_123, cause, "pipeline-eu", "deliver"),
        stable_id(1_700_000_000_123, cause, "pipeline-eureview"),  # parts are kept apart
    }
    assert first not in others and len(others) == 4


def test_a_stable_id_is_a_uuid7_at_the_time_given() -> None:
    made = stable_id(1_700_000_000_123, "cause", "svc", "key")
    parsed = uuid.UUID(made)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert str(parsed) == made
    assert id_time(made) == 1_700_000_000.123
