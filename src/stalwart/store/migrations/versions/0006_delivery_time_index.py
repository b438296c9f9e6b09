"""An index on the deliveries' message time, so traffic and flows read only the window.

Traffic per sender -> service edge (the overview's chart over 1 h to 24 h,
``/api/traffic``) and the system map's flows join each message of the window
to its deliveries. For windows of more than a few minutes PostgreSQL chose to
hash the whole ``deliveries`` table (a sequential scan of all of them: 0.8 s
for a 24 h window on a store of 1,000,000, growing with the store). With the
deliveries narrowed by ``message_created_at`` over this index, both sides of
the join are ranges of the window.

Building it locks ``deliveries`` for writes (about 2 s per million rows here):
run ``stalwart store upgrade`` before starting the persisters on a large store.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_INDEX = "ix_deliveries_message_time"


def upgrade() -> None:
    op.create_index(_INDEX, "deliveries", ["message_created_at"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="deliveries")
