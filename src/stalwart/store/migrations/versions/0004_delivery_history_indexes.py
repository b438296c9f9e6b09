"""Partial indexes for messages that ever failed, or took more than one attempt.

``stalwart messages --ever-state failed`` and ``--min-attempts N`` select
messages by their deliveries' history (``failed_at`` set, ``attempts``).
Without an index, a page with few such messages read every delivery. Both
indexes are partial: a delivery that never failed and was never retried (the
common case) adds no entry to either.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_deliveries_failed": "failed_at IS NOT NULL",
    "ix_deliveries_retried": "attempts > 1",
}


def upgrade() -> None:
    for name, where in _INDEXES.items():
        op.create_index(
            name,
            "deliveries",
            ["service", "message_id"],
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    for name in _INDEXES:
        op.drop_index(name, table_name="deliveries")
