"""Signed tokens by the doc alone: a foreign client (PyJWT and pika, its own process,
knowing only docs/wire-format.md) signs messages for a handler that requires a role;
the good token is accepted, and each token missing a claim is refused with the reason
the doc gives."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from amqp_support import private_exchange
from stalwart.bus.amqp import AmqpTransport
from stalwart.config import SecuritySettings, load_settings
from stalwart.service import Context, Service, ServiceRunner, TokenAuthority
from waiting import until

CLIENT = Path(__file__).with_name("token_client.py")
DOC = Path(__file__).parents[2] / "docs" / "wire-format.md"

# What the doc says each refused token's reason is (with the client's subject).
REFUSED = {
    "no-iss": 'not authorised: invalid token: Token is missing the "iss" claim',
    "no-sub": 'not authorised: invalid token: Token is missing the "sub" claim',
    "no-exp": 'not authorised: invalid token: Token is missing the "exp" claim',
    "no-roles": "not authorised: token of 'legacy-tool' lacks role(s) ['operator']",
    "absent": "not authorised: missing token; roles ['operator'] required",
}


def _documented_token() -> str:
    """The example token printed in the doc's token section."""
    section = DOC.read_text().split("## Signed tokens", 1)[1]
    found = re.search(r"^(eyJ[\w-]+\.[\w-]+\.[\w-]+)$", section, re.MULTILINE)
    assert found, "docs/wire-format.md shows no example token"
    return found.group(1)


def test_the_documented_reasons_are_the_ones_the_test_expects() -> None:
    # Given the doc's token section
    section = DOC.read_text().split("## Signed tokens", 1)[1].split("\n## ", 1)[0]
    # Then each refusal this test expects is documented there, word for word
    for reason in REFUSED.values():
        assert reason.removeprefix("not authorised: ") in section, reason


def test_the_documented_example_token_is_valid_for_the_documented_secret() -> None:
    # Given a service configured with the doc's example secret
    authority = TokenAuthority(SecuritySettings(secret="example-secret-of-at-least-32-bytes"))
    # Then the doc's example token verifies, with the documented claims
    claims = authority.verify(_documented_token(), ["operator"])
    assert claims["sub"] == "legacy-tool" and claims["iss"] == "stalwart"


@pytest.fixture
async def exchange(rabbitmq_url: str, unique: str) -> AsyncIterator[str]:
    async with private_exchange(rabbitmq_url, "token", unique) as name:
        yield name


@pytest.mark.rabbitmq
async def test_a_foreign_client_signs_by_the_doc_and_each_missing_claim_is_refused(
    rabbitmq_url: str, exchange: str, unique: str, tmp_path: Path
) -> None:
    # Given a service on RabbitMQ whose handler requires the role 'operator'
    secret = secrets.token_urlsafe(32)
    settings = load_settings(
        env={},
        overrides={
            "bus.url": rabbitmq_url,
            "bus.exchange": exchange,
            "home": str(tmp_path),
            "security.secret": secret,
        },
    )
    name = f"signed-{unique}"
    svc = Service(name, heartbeat_interval=1.0)
    accepted: list[str] = []

    @svc.handler("token.check", roles=("operator",))
    async def check(ctx: Context, body: Any) -> None:
        accepted.append(ctx.envelope.id)

    transport = AmqpTransport(rabbitmq_url, exchange=exchange)
    await transport.start()
    runner = ServiceRunner(svc, transport, settings)
    await runner.start()
    try:
        # When the foreign client publishes one message per case, signed by the doc alone
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(CLIENT), rabbitmq_url, exchange, "token.check", secret],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        sent = json.loads(result.stdout)
        ids: dict[str, str] = sent["ids"]

        async def seen() -> tuple[list[Any], list[Any]]:
            return list(accepted), await transport.dead_letters(name)

        def accepted_and_dead(seen: tuple[list[Any], list[Any]]) -> bool:
            return bool(seen[0]) and len(seen[1]) >= len(REFUSED)

        await until(seen, 30.0, "the accepted and the refused messages", accept=accepted_and_dead)
        letters = await transport.dead_letters(name)
    finally:
        await runner.stop(grace=5.0)
        await transport.close()
    # Then the client's hand-made example token is the doc's
    assert sent["example"] == _documented_token()
    # And the handler ran for the good token only
    assert accepted == [ids["good"]]
    # And each other message was refused with the documented reason
    reasons = {letter.envelope.id: letter.reason for letter in letters if letter.envelope}
    assert {case: reasons.get(ids[case]) for case in REFUSED} == REFUSED


def test_the_foreign_client_does_not_import_stalwart() -> None:
    # Given the token client's source
    source = CLIENT.read_text()
    # Then it imports nothing of stalwart (it also asserts so at run time)
    assert "import stalwart" not in source and "from stalwart" not in source
