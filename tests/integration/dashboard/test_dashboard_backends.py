"""The same dashboard on the scale-out backends: PostgreSQL for the store, RabbitMQ for the bus."""

from __future__ import annotations

from typing import Any

import pytest
from dashboard_system import dashboard_config, logged_in_csrf, running_service, running_system

from stalwart.envelope import Envelope
from stalwart.service import Context, Service
from waiting import until


@pytest.mark.postgres
async def test_messages_detail_and_overview_from_postgresql(
    postgres_url: str, sqlite_bus_url: str
) -> None:
    # Given the store on PostgreSQL
    async with running_system(sqlite_bus_url, postgres_url, dashboard_config()) as system:
        parent = Envelope.new("work.pg", {"text": "bandpass solved"}, kind="Cal")
        child = Envelope.new("work.pg.done", {"ok": True}, causation_id=parent.id)
        await system.publish(parent, child)
        await system.stored(child.id)
        # When listing, searching and opening, Then PostgreSQL answers like SQLite
        page = (await system.client.get("/api/messages", params={"topic": "work.#"})).json()
        assert [m["id"] for m in page["items"]] == [child.id, parent.id]
        found = (await system.client.get("/api/messages", params={"text": "bandpass"})).json()
        assert [m["id"] for m in found["items"]] == [parent.id]
        detail = (await system.client.get(f"/api/messages/{child.id}")).json()
        assert detail["chain"]["id"] == parent.id
        assert (await system.client.get("/")).status_code == 200


@pytest.mark.rabbitmq
async def test_dead_letters_retry_over_rabbitmq(
    rabbitmq_url: str, sqlite_store_url: str, unique: str
) -> None:
    # Given the bus on RabbitMQ and a service that always fails
    name = f"dash-{unique}"
    svc = Service(name, site="eu", heartbeat_interval=1.0, max_attempts=1)

    @svc.handler(f"{name}.work")
    async def fail(ctx: Context, body: Any) -> None:
        raise RuntimeError("always fails")

    async with (
        running_system(rabbitmq_url, sqlite_store_url, dashboard_config()) as system,
        running_service(system, svc),
    ):
        await system.publish(Envelope.new(f"{name}.work", {"n": 1}))

        async def dead() -> Any:
            r = await system.client.get("/api/dead-letters", params={"queue": name})
            return r.json() if r.status_code == 200 and r.json() else None

        (letter,) = await until(dead, 30, "a dead letter on RabbitMQ")
        token = await logged_in_csrf(system)
        # When purging it through the API, Then RabbitMQ's dead-letter queue is empty
        done = await system.client.post(
            f"/api/dead-letters/{name}/purge",
            json={"keys": [letter["key"]]},
            headers={"x-csrf-token": token},
        )
        assert done.status_code == 200 and done.json()["count"] == 1
        assert (await system.transport.queue_stats(name)).dead == 0
