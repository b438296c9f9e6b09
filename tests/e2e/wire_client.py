"""A foreign AMQP client that knows only docs/wire-format.md (it never imports stalwart).

Usage: python wire_client.py AMQP_URL EXCHANGE REQUEST_TOPIC REPLY_TOPIC
It binds a queue of its own to REPLY_TOPIC, publishes one request envelope
on REQUEST_TOPIC asking for a reply there, waits for the reply and prints
one JSON line: {"request": <sent envelope>, "reply": <received envelope>}.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime

import pika


def main() -> None:
    url, exchange, request_topic, reply_topic = sys.argv[1:5]
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    inbox = f"{exchange}.wire-client"
    channel.queue_declare(inbox, durable=True)
    channel.queue_bind(inbox, exchange, routing_key=reply_topic)
    envelope = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "topic": request_topic,
        "kind": "Ask",
        "sender": "wire-client@elsewhere/1",
        "correlation_id": str(uuid.uuid4()),
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "reply_to": reply_topic,
        "headers": {"origin": "pika"},
        "body": {"question": "six times seven", "n": 6},
    }
    channel.basic_publish(
        exchange=exchange,
        routing_key=request_topic,
        body=json.dumps(envelope).encode(),
        properties=pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=envelope["id"],
            type=envelope["kind"],
        ),
    )
    deadline = time.monotonic() + 30.0
    reply = None
    while reply is None and time.monotonic() < deadline:
        method, _props, body = channel.basic_get(inbox)
        if method is None:
            conn.sleep(0.05)
            continue
        reply = json.loads(body)
        channel.basic_ack(method.delivery_tag)
    conn.close()
    assert "stalwart" not in sys.modules, "the foreign client must not use stalwart"
    print(json.dumps({"request": envelope, "reply": reply}))
    sys.exit(0 if reply is not None else 3)


if __name__ == "__main__":
    main()
