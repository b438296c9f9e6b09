"""Envelope codec, size limit, and the forward-only state merge."""

from __future__ import annotations

import functools
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from stalwart.envelope import (
    TERMINAL_STATES,
    DeliveryState,
    Envelope,
    decode,
    encode,
    merge_state,
    message_id_of,
    undecodable_id,
)
from stalwart.errors import DecodeError, MessageTooLarge, TopicError
from stalwart.ids import id_time, new_id


class Unit(BaseModel):
    ous: str


def test_round_trip_keeps_every_field() -> None:
    env = Envelope.new(
        "pipeline.process.jao",
        Unit(ous="uid://A1"),
        ttl=60,
        correlation_id="c1",
        causation_id="p1",
        reply_to="sys.reply.x",
        headers={"h": "v"},
        token="t",
        sender="a@b/c",
    )
    assert env.kind == "Unit" and env.body == {"ous": "uid://A1"}
    assert decode(encode(env)) == env
    assert json.loads(encode(env))["v"] == 1


def test_envelopes_are_immutable_and_evolve_into_copies() -> None:
    env = Envelope.new("a.b", {"x": 1})
    with pytest.raises(ValidationError):
        env.topic = "c.d"  # type: ignore[misc]
    moved = env.evolve(topic="c.d")
    assert (env.topic, moved.topic, moved.id) == ("a.b", "c.d", env.id)


def test_size_limit_is_enforced_with_advice() -> None:
    env = Envelope.new("a.b", {"blob": "x" * 2000})
    with pytest.raises(MessageTooLarge, match="over the limit of 1000 bytes"):
        encode(env, max_size=1000)
    assert len(encode(env, max_size=10_000)) > 2000


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe", "not a JSON envelope"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"topic": "a.b", "v": 9}', "unsupported wire version 9"),
        (b'{"topic": "A B"}', "bad word"),
        (b'{"topic": "a.b", "attempt": 0}', "attempt"),
        (b'{"topic": "a.b", "surprise": 1}', "surprise"),
        (b"[" * 100_000, "not a JSON envelope: maximum recursion depth"),
    ],
)
def test_bad_input_raises_decode_error_with_raw_attached(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as caught:
        decode(raw)
    assert caught.value.raw == raw


def test_topic_is_validated_when_built() -> None:
    for _ in range(2):  # topic checks are cached; a bad topic must fail every time
        with pytest.raises(TopicError):
            Envelope.new("Bad Topic", {})
        with pytest.raises(DecodeError, match="topic"):
            decode(b'{"id":"x","topic":"Bad Topic","v":1}')


def test_expiry() -> None:
    now = datetime.now(UTC)
    env = Envelope.new("a.b", created_at=now, ttl=10)
    assert not env.expired(now + timedelta(seconds=9))
    assert env.expired(now + timedelta(seconds=10))
    assert not Envelope.new("a.b").expired()


def test_redacted_masks_the_token() -> None:
    env = Envelope.new("a.b", token="secret-token")
    assert env.redacted()["token"] == "***"
    assert "secret-token" not in repr(env)


def test_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_id() for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i[14] == "7" for i in ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert [str(u) for u in parsed] == ids  # canonical: lower case, 8-4-4-4-12
    assert {u.version for u in parsed} == {7} and {u.variant for u in parsed} == {uuid.RFC_4122}
    assert abs(id_time(ids[0]) - datetime.now(UTC).timestamp()) < 5


def test_a_forked_child_does_not_repeat_its_parents_random_bits() -> None:
    new_id()  # the parent now holds random bits for the ids that follow
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send the random part of its next id, and leave
        os.write(write, new_id()[19:].encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child and child != new_id()[19:]


states = st.sampled_from(list(DeliveryState))


@given(st.lists(states, min_size=1, max_size=12), st.randoms())
def test_merge_converges_whatever_the_order_and_repetition(history, rnd) -> None:
    shuffled = history + rnd.sample(history, len(history))
    rnd.shuffle(shuffled)
    forward = functools.reduce(merge_state, history, None)
    other = functools.reduce(merge_state, shuffled, None)
    assert forward == other


@given(states, states)
def test_merge_never_moves_back_from_a_terminal_state(a, b) -> None:
    merged = merge_state(a, b)
    if a in TERMINAL_STATES:
        assert merged in TERMINAL_STATES
    assert merge_state(merged, a) == merged and merge_state(merged, b) == merged


def test_received_then_consumed_is_consumed_in_either_order() -> None:
    r, c = DeliveryState.RECEIVED, DeliveryState.CONSUMED
    assert merge_state(merge_state(None, r), c) == merge_state(merge_state(None, c), r) == c


def test_a_decode_error_names_the_id_the_bytes_claim() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(b'{"id": "0190-x", "topic": 42}')
    assert caught.value.message_id == "0190-x"
    with pytest.raises(DecodeError) as unreadable:
        decode(b"\xff")
    assert unreadable.value.message_id is None


def test_undecodable_bytes_get_a_stable_id_of_their_own() -> None:
    assert undecodable_id(b"junk") == undecodable_id(b"junk") != undecodable_id(b"junk2")


@pytest.mark.parametrize(
    ("claimed", "kept"),
    [
        ("0190-x", True),
        ("x" * 64, True),
        ("x" * 65, False),  # longer than an envelope id may be
        ("", False),
        ("a\x00b", False),  # control characters no database keeps as text
        ("a\nb", False),
        ("a\ud800", False),  # a lone surrogate from a JSON escape
        (None, False),
    ],
)
def test_undecodable_input_is_recorded_under_its_claimed_id_only_when_valid(
    claimed: str | None, kept: bool
) -> None:
    raw = b'{"id": "...", "topic": 42}'
    chosen = message_id_of(raw, DecodeError("invalid envelope", raw, claimed))
    assert chosen == (claimed if kept else undecodable_id(raw))
    assert message_id_of(raw, None) == undecodable_id(raw)


def test_decoding_bytes_names_the_id_they_are_recorded_under() -> None:
    too_long = json.dumps({"id": "z" * 65, "topic": "qa.verify"}).encode()
    expected = {
        b'{"id": "0190-y", "topic": "Not A Topic"}': "0190-y",
        b"\xff": undecodable_id(b"\xff"),
        too_long: undecodable_id(too_long),
    }
    for raw, message_id in expected.items():
        with pytest.raises(DecodeError) as caught:
            decode(raw)
        assert message_id_of(raw, caught.value) == message_id


def test_an_envelope_without_an_id_gets_the_same_one_from_every_reader() -> None:
    raw = b'{"topic": "qa.verify.eu", "body": {"ous": "X1"}}'
    assert decode(raw).id == decode(raw.decode()).id == undecodable_id(raw)
    assert decode(raw + b" ").id != decode(raw).id  # other bytes, another message
