"""A foreign client that signs its messages knowing only docs/wire-format.md (no stalwart).

Usage: python token_client.py AMQP_URL EXCHANGE TOPIC SECRET
It builds the section's example token by hand (base64url and HMAC-SHA256), then
publishes one envelope per case on TOPIC, each with a token made with PyJWT
as the section says: ``good`` (every claim), ``no-iss``, ``no-sub``,
``no-exp``, ``no-roles`` (that claim left out) and ``absent`` (no token).
Prints one JSON line: {"example": <the hand-built token>, "ids": {case: envelope id}}.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt
import pika

EXAMPLE_SECRET = "example-secret-of-at-least-32-bytes"
EXAMPLE_HEADER = {"alg": "HS256", "typ": "JWT"}
EXAMPLE_CLAIMS = {
    "iss": "stalwart",
    "sub": "legacy-tool",
    "roles": ["operator"],
    "iat": 1795000000,
    "exp": 4102444800,
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def example_token() -> str:
    """The documented example, by the documented recipe."""
    parts = [
        _b64url(json.dumps(p, separators=(",", ":")).encode())
        for p in (
            EXAMPLE_HEADER,
            EXAMPLE_CLAIMS,
        )
    ]
    signing_input = ".".join(parts)
    mac = hmac.new(EXAMPLE_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


def tokens(secret: str) -> dict[str, str | None]:
    now = int(time.time())
    claims = {
        "iss": "stalwart",
        "sub": "legacy-tool",
        "roles": ["operator"],
        "iat": now,
        "exp": now + 3600,
    }
    made: dict[str, str | None] = {"good": jwt.encode(claims, secret, algorithm="HS256")}
    for claim in ("iss", "sub", "exp", "roles"):
        partial = {k: v for k, v in claims.items() if k != claim}
        made[f"no-{claim}"] = jwt.encode(partial, secret, algorithm="HS256")
    made["absent"] = None
    return made


def envelope(topic: str, case: str, token: str | None) -> dict[str, Any]:
    env: dict[str, Any] = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "topic": topic,
        "sender": "legacy-tool@elsewhere/1",
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "body": {"case": case},
    }
    if token is not None:
        env["token"] = token
    return env


def main() -> None:
    url, exchange, topic, secret = sys.argv[1:5]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    ids = {}
    for case, token in tokens(secret).items():
        env = envelope(topic, case, token)
        channel.basic_publish(
            exchange=exchange,
            routing_key=topic,
            body=json.dumps(env).encode(),
            properties=pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=env["id"]
            ),
        )
        ids[case] = env["id"]
    conn.close()
    assert "stalwart" not in sys.modules, "the foreign client must not use stalwart"
    print(json.dumps({"example": example_token(), "ids": ids}))


if __name__ == "__main__":
    main()
