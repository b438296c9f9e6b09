"""Delivery counts per service and state, kept by triggers on ``deliveries``.

The overview shows how many deliveries each service has in each state;
counting them with ``GROUP BY`` reads every delivery (a second or more on a
store of millions). The triggers keep the counts as rows change, in the same
transaction, whatever writes them (the persister, retention, a manual fix),
so reading them costs a few rows. The migration backfills them from the
deliveries already stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TABLE = "delivery_state_counts"

# SQLite: row triggers. A delivery's service never changes; its state does.
_SQLITE_TRIGGERS = {
    "deliveries_count_insert": (
        "AFTER INSERT ON deliveries BEGIN "
        f"INSERT INTO {_TABLE} (service, state, n) VALUES (new.service, new.state, 1) "
        "ON CONFLICT (service, state) DO UPDATE SET n = n + 1; END"
    ),
    "deliveries_count_update": (
        "AFTER UPDATE OF state ON deliveries WHEN old.state IS NOT new.state BEGIN "
        f"INSERT INTO {_TABLE} (service, state, n) VALUES (new.service, new.state, 1) "
        "ON CONFLICT (service, state) DO UPDATE SET n = n + 1; "
        f"UPDATE {_TABLE} SET n = n - 1 WHERE service = old.service AND state = old.state; END"
    ),
    "deliveries_count_delete": (
        "AFTER DELETE ON deliveries BEGIN "
        f"UPDATE {_TABLE} SET n = n - 1 WHERE service = old.service AND state = old.state; END"
    ),
}

# PostgreSQL: statement triggers over transition tables, one grouped upsert per
# statement (a batch of a thousand deliveries touches a handful of count rows).
# Rows are upserted in key order so that concurrent writers lock them alike.
_UPSERT = (
    f"INSERT INTO {_TABLE} AS c (service, state, n) "
    "SELECT service, state, sum(d) FROM ({changes}) AS changes "
    "GROUP BY service, state ORDER BY service, state "
    "ON CONFLICT (service, state) DO UPDATE SET n = c.n + excluded.n"
)
_CHANGED = "FROM new_rows n JOIN old_rows o USING (message_id, service) WHERE o.state <> n.state"
_PG_FUNCTIONS = {
    "insert": _UPSERT.format(changes="SELECT service, state, 1 AS d FROM new_rows"),
    "update": _UPSERT.format(
        changes=f"SELECT n.service, n.state, 1 AS d {_CHANGED} "
        f"UNION ALL SELECT o.service, o.state, -1 AS d {_CHANGED}"
    ),
    "delete": _UPSERT.format(changes="SELECT service, state, -1 AS d FROM old_rows"),
}
_PG_REFERENCING = {
    "insert": "NEW TABLE AS new_rows",
    "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "delete": "OLD TABLE AS old_rows",
}


def upgrade() -> None:
    op.create_table(
        _TABLE,
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("n", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("service", "state", name="pk_delivery_state_counts"),
    )
    # Backfill before the triggers exist; the migration's transaction holds the table.
    op.execute(
        f"INSERT INTO {_TABLE} (service, state, n) "
        "SELECT service, state, count(*) FROM deliveries GROUP BY service, state"
    )
    if op.get_bind().dialect.name == "postgresql":
        for event, body in _PG_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION deliveries_count_{event}() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER deliveries_count_{event} AFTER {event.upper()} ON deliveries "
                f"REFERENCING {_PG_REFERENCING[event]} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION deliveries_count_{event}()"
            )
        return
    for name, body in _SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for event in _PG_FUNCTIONS:
        op.execute(
            f"DROP TRIGGER IF EXISTS deliveries_count_{event}"
            + (" ON deliveries" if postgres else "")
        )
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS deliveries_count_{event}()")
    op.drop_table(_TABLE)
