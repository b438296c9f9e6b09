"""The store commands end to end on a SQLite store: upgrade, list, show, reports, prune."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from store_traffic import Traffic
from typer.testing import CliRunner

from stalwart.cli import build_app
from stalwart.envelope import Envelope, utcnow
from stalwart.messages import Report, ReportLevel, report_topic
from stalwart.store import Store, head_revision


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "stalwart.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path}/s/store.db"\n'
        f'[bus]\nurl = "sqlite:///{tmp_path}/bus.db"\n'
    )
    return path


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_app(["store"]), list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def _seed(config: Path, traffic: Traffic) -> tuple[Envelope, Envelope]:
    url = config.read_text().split('"')[1]
    cause = traffic.message("pipeline.process.jao", {"ous": "X1"})
    effect = traffic.message("qa.verify.eu", {"score": 0.5}, causation_id=cause.id)
    old = traffic.message("qa.verify.eu", created_at=utcnow() - timedelta(days=100))
    report = Envelope.new(
        report_topic("error"), Report(level=ReportLevel.ERROR, source="qa", text="bad flux")
    )

    async def write() -> None:
        store = await Store.open(url)
        try:
            lifecycle = traffic.lifecycle(traffic.step(effect, "qa", "dead", reason="no model"))
            await store.write([cause, effect, old, report, lifecycle])
        finally:
            await store.close()

    asyncio.run(write())
    return cause, effect


def test_commands_answer_from_the_store(config: Path, traffic: Traffic, tmp_path: Path) -> None:
    # Given a migrated store with a small causal chain, an old message and a report
    code, out = _invoke("store", "upgrade", "-c", str(config))
    assert code == 0 and f"revision {head_revision()}" in out
    cause, effect = _seed(config, traffic)

    # When listing dead messages as JSON; Then only the effect comes back
    code, out = _invoke("messages", "-c", str(config), "--state", "dead", "--json")
    assert code == 0
    assert [m["id"] for m in json.loads(out)["items"]] == [effect.id]

    # When showing the effect; Then its body, its state with reason and its cause are shown
    code, out = _invoke("show", effect.id, "-c", str(config))
    assert code == 0
    assert "score" in out and "no model" in out and cause.id in out

    # When listing reports of at least warning level; Then the error is there
    code, out = _invoke("reports", "-c", str(config), "--level", "warning")
    assert code == 0 and "bad flux" in out

    # When pruning older than 90 days with an export; Then the old message goes
    export = tmp_path / "old.jsonl.gz"
    code, out = _invoke("store", "prune", "-o", "90d", "--export", str(export), "-c", str(config))
    assert code == 0 and "pruned 1 messages" in out and export.exists()


def test_bad_input_fails_on_one_line_with_what_to_do(config: Path) -> None:
    # Given a store; When asking for an unknown id, a bad time and a forged cursor
    assert _invoke("store", "upgrade", "-c", str(config))[0] == 0
    code, out = _invoke("show", "no-such-id", "-c", str(config))
    assert code == 1 and "stalwart messages" in out
    code, out = _invoke("messages", "-c", str(config), "--since", "yesterday")
    assert code == 2 and "ISO-8601" in out  # a usage error, before the store is opened
    code, out = _invoke("messages", "-c", str(config), "--after", "forged")
    # Then each fails with a hint
    assert code == 1 and "next" in out


def test_messages_by_delivery_history(config: Path, traffic: Traffic) -> None:
    # Given a store whose effect message went dead at qa on its first attempt
    assert _invoke("store", "upgrade", "-c", str(config))[0] == 0
    _, effect = _seed(config, traffic)

    def ids(*filters: str) -> list[str]:
        code, out = _invoke("messages", "-c", str(config), "--json", *filters)
        assert code == 0, out
        return [m["id"] for m in json.loads(out)["items"]]

    # When filtering by the states ever reached and the attempts taken
    assert ids("--ever-state", "dead", "--service", "qa") == [effect.id]
    assert ids("--ever-state", "consumed") == []
    assert ids("--min-attempts", "1") == [effect.id]
    assert ids("--min-attempts", "2") == []
    # Then an unknown state or a meaningless count is refused with the choices
    code, out = _invoke("messages", "-c", str(config), "--ever-state", "bogus")
    assert code == 2 and "failed" in out
    code, out = _invoke("messages", "-c", str(config), "--min-attempts", "0")
    assert code == 2 and "--min-attempts" in out


def test_show_takes_the_short_id_tail_prints(config: Path, traffic: Traffic) -> None:
    # Given a store holding a cause and its effect, made within the same minute
    assert _invoke("store", "upgrade", "-c", str(config))[0] == 0
    cause, effect = _seed(config, traffic)
    # When showing the effect by the end of its id; Then it is shown
    code, out = _invoke("show", effect.id[-8:], "-c", str(config), "--json")
    assert code == 0, out
    assert json.loads(out)["envelope"]["id"] == effect.id
    # When giving a start both ids share; Then the error lists both and asks for more
    shared = cause.id[:8]
    assert effect.id.startswith(shared)
    code, out = _invoke("show", shared, "-c", str(config))
    assert code == 1
    assert cause.id in out and effect.id in out and "give more of the id" in out
