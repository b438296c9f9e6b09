"""A foreign NATS client that knows only docs/wire-format.md (it never imports stalwart).

Usage: python nats_wire_client.py NATS_URL NAMESPACE REQUEST_TOPIC REPLY_TOPIC
It makes a consumer of its own on the work stream for REPLY_TOPIC, publishes
one request envelope on REQUEST_TOPIC asking for a reply there, waits for the
reply and prints one JSON line: {"request": <sent envelope>, "reply": <received>}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime

import nats
from nats.js.api import AckPolicy, ConsumerConfig


async def main() -> None:
    url, namespace, request_topic, reply_topic = sys.argv[1:5]
    nc = await nats.connect(url)
    js = nc.jetstream()
    # The work stream keeps a message only for consumers that want it: make one first.
    await js.add_consumer(
        namespace,
        ConsumerConfig(
            durable_name="wire-client",
            filter_subject=f"{namespace}.{reply_topic}",
            ack_policy=AckPolicy.EXPLICIT,
        ),
    )
    inbox = await js.pull_subscribe_bind("wire-client", stream=namespace)
    envelope = {
        "v": 1,
        "id": str(uuid.uuid4()),
        "topic": request_topic,
        "kind": "Ask",
        "sender": "wire-client@elsewhere/1",
        "correlation_id": str(uuid.uuid4()),
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "reply_to": reply_topic,
        "headers": {"origin": "nats-py"},
        "body": {"question": "six times seven", "n": 6},
    }
    await js.publish(
        f"{namespace}.{request_topic}",
        json.dumps(envelope).encode(),
        headers={"Nats-Msg-Id": envelope["id"]},
    )
    (msg,) = await inbox.fetch(1, timeout=30.0)
    reply = json.loads(msg.data)
    await msg.ack()
    await js.delete_consumer(namespace, "wire-client")
    await nc.close()
    assert "stalwart" not in sys.modules
    print(json.dumps({"request": envelope, "reply": reply}))


if __name__ == "__main__":
    asyncio.run(main())
