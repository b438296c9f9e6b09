"""The embedded durable bus: one SQLite file (WAL) shared by the processes of a host.

``sqlite:///path/bus.db`` needs no server. Publishes are routed at publish
time by the queues' bindings (AMQP topic semantics) and copied into every
matching queue; consumers of one queue compete for its rows through leases.
Every write of a process goes through one group-commit thread, so concurrent
publishes and acks share a transaction and an fsync. With ``durability="full"``
(the default) ``publish`` returns once the commit is on disk
(``synchronous=FULL``); ``"normal"`` is faster and weaker: a power loss (not a
process crash) may lose the last commits. Claims, acks and lease changes
commit without waiting for the disk: a power loss can only undo them, making a
message come back, never lose it. See ``docs/embedded-bus.md``.
"""

from stalwart.bus.sqlite._transport import SqliteDelivery, SqliteTransport

__all__ = ["SqliteDelivery", "SqliteTransport"]
