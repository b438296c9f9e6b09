"""docs/deploy.md shows the RabbitMQ configuration the cluster tests run, not a copy."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stalwart.dev.rabbitmq_config import (
    ADVANCED_CONFIG,
    DEV_PASSWORDS,
    JOIN_STEPS,
    definitions,
    definitions_json,
    rabbitmq_conf,
)

DOC = (Path(__file__).resolve().parents[3] / "docs" / "deploy.md").read_text()


def _block(after: str, language: str) -> str:
    """The fenced ``language`` block that follows the heading ``after``."""
    section = DOC[DOC.index(after) :]
    found = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert found, f"no ```{language} block after {after!r} in docs/deploy.md"
    return found.group(1)


def test_rabbitmq_conf_in_the_doc_is_the_rendered_one() -> None:
    shown = _block("### `/etc/rabbitmq/rabbitmq.conf`", "ini")
    assert shown == rabbitmq_conf("0.0.0.0:5672", "/etc/rabbitmq/definitions.json")


def test_advanced_config_in_the_doc_is_the_one_the_nodes_boot_with() -> None:
    shown = _block("### `/etc/rabbitmq/advanced.config`", "erlang")
    assert shown == ADVANCED_CONFIG
    assert "dead_letter_worker_publisher_confirm_timeout, 5000" in shown


def test_definitions_in_the_doc_are_the_rendered_ones() -> None:
    shown = _block("### `/etc/rabbitmq/definitions.json`", "json")
    assert shown == definitions_json()
    assert json.loads(shown)["topic_permissions"][0]["write"] == "^(?!sys\\.).*"


def test_join_commands_in_the_doc_are_the_steps_the_cluster_runs() -> None:
    shown = _block("### Joining the nodes", "console")
    lines = shown.splitlines()
    commands = [line.removeprefix("$ rabbitmqctl ").split("#")[0].split() for line in lines]
    steps = [[arg.format(first="rabbit@rabbit-1") for arg in step] for step in JOIN_STEPS]
    assert commands[: len(steps)] == steps


def test_other_exchange_names_get_their_own_patterns() -> None:
    # Given a deployment whose [bus] exchange is "obs.main"
    rendered = definitions(DEV_PASSWORDS, exchange="obs.main")
    # Then the permissions and the policy name that exchange, its dot escaped
    assert rendered["permissions"][1]["write"] == "^obs\\.main$"
    assert rendered["topic_permissions"][0]["exchange"] == "obs.main"
    assert rendered["policies"][0]["pattern"] == "^obs\\.main\\."
