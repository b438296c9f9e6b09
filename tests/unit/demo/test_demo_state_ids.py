"""A demo handler run again for one message (after a crash before its claim) records
each state of the unit once: the same message id both times."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stalwart.demo.models import UnitReady, UnitState
from stalwart.demo.services import _state, dispatch
from stalwart.envelope import Envelope
from stalwart.ids import new_id
from stalwart.service import Context


class _Runner:
    """The part of a runner a Context publishes through: it records (topic, id)."""

    def __init__(self, service: str) -> None:
        self.service = SimpleNamespace(name=service)
        self.instance, self.site, self.settings = "test-1", "jao", None
        self.sent: list[tuple[str, str]] = []

    async def publish(self, topic: str, body: Any = None, **fields: Any) -> Envelope:
        sent = Envelope.new(topic, body, id=fields.get("id") or new_id())
        self.sent.append((sent.topic, sent.id))
        return sent


def _context(runner: _Runner, envelope: Envelope) -> Context:
    return Context(runner, envelope, attempt=None)  # type: ignore[arg-type]


async def test_a_dispatch_run_twice_publishes_the_same_messages() -> None:
    unit = Envelope.new("ous.ready", UnitReady(ous="uid://A001/X1/X2", project="p", size_kib=8))
    first, again = _Runner("dispatcher"), _Runner("dispatcher")

    await dispatch(_context(first, unit), UnitReady.model_validate(unit.body))
    await dispatch(_context(again, unit), UnitReady.model_validate(unit.body))

    topics = [topic for topic, _ in first.sent]
    assert topics[0] == "ous.state" and topics[1].startswith("pipeline.process.")
    assert first.sent == again.sent


async def test_each_state_has_its_own_id_and_each_attempts_problem_too() -> None:
    runner = _Runner("pipeline-jao")
    request = Envelope.new("pipeline.process.jao", {"ous": "uid://A001/X1/X2"})
    retried = request.model_copy(update={"attempt": request.attempt + 1})
    ctx, ctx_retried = _context(runner, request), _context(runner, retried)

    await _state(ctx, "uid://A001/X1/X2", UnitState.PROCESSING_PROBLEM, "jao", "boom")
    await _state(ctx_retried, "uid://A001/X1/X2", UnitState.PROCESSING_PROBLEM, "jao", "boom")
    await _state(ctx, "uid://A001/X1/X2", UnitState.READY_FOR_REVIEW, "jao")
    await _state(ctx_retried, "uid://A001/X1/X2", UnitState.READY_FOR_REVIEW, "jao")

    ids = [sent_id for _, sent_id in runner.sent]
    assert len(set(ids[:3])) == 3  # two attempts' problems and a state: three records
    assert ids[3] == ids[2]  # the same state reached again: the same record
