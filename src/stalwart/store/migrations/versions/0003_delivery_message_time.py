"""Deliveries carry their message's ``created_at``.

``stalwart messages --service S --state ST`` lists messages newest first, but
``deliveries`` did not hold the messages' time: a selective pair cost
thousands of random message lookups per page (44-69 ms p95 on PostgreSQL with
a million messages). Transitions now carry the message's ``created_at``; the
index ``(service, state, message_created_at, message_id)`` replaces
``(service, state, message_id)`` and yields such a page in order. The
migration fills the new column from the messages already stored.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from stalwart.store.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_OLD_INDEX = "ix_deliveries_service_state"
_NEW_INDEX = "ix_deliveries_service_state_time"


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("message_created_at", UtcDateTime(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # No state changes here: the kept counts' update trigger has nothing to do,
        # and would otherwise join two transition tables of every delivery.
        op.execute("ALTER TABLE deliveries DISABLE TRIGGER deliveries_count_update")
        op.execute(
            "UPDATE deliveries AS d SET message_created_at = m.created_at "
            "FROM messages AS m WHERE m.id = d.message_id"
        )
        op.execute("ALTER TABLE deliveries ENABLE TRIGGER deliveries_count_update")
    else:  # the SQLite trigger fires on state updates only
        op.execute(
            "UPDATE deliveries SET message_created_at = "
            "(SELECT created_at FROM messages WHERE messages.id = deliveries.message_id)"
        )
    op.drop_index(_OLD_INDEX, table_name="deliveries")
    op.create_index(
        _NEW_INDEX, "deliveries", ["service", "state", "message_created_at", "message_id"]
    )


def downgrade() -> None:
    op.drop_index(_NEW_INDEX, table_name="deliveries")
    op.create_index(_OLD_INDEX, "deliveries", ["service", "state", "message_id"])
    op.drop_column("deliveries", "message_created_at")
