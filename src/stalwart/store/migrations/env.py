"""Alembic environment: always run programmatically on a connection we pass in.

:func:`stalwart.store.migrate.upgrade` puts a live synchronous connection in
``config.attributes["connection"]``; there is no offline mode and no URL here.
The revisions spell out every table; the target (for comparing and
autogenerating) is every part's registered ``MetaData``, so it is whole
once the parts' table modules are imported.
"""

from __future__ import annotations

from alembic import context

from stalwart.errors import ConfigError
from stalwart.store.schema import registered

_connection = context.config.attributes.get("connection")
if _connection is None:
    raise ConfigError("run store migrations with `stalwart store upgrade`, not the alembic command")
context.configure(
    connection=_connection, target_metadata=list(registered().values()), render_as_batch=True
)
with context.begin_transaction():
    context.run_migrations()
