"""The RabbitMQ cluster configuration stalwart is tested with and ``docs/deploy.md`` shows.

One place: the development cluster (:mod:`stalwart.dev.rabbitmq`) boots from
these renders, its tests check what they promise (quorum queues on every node,
``sys.*`` refused to clients), and a test compares ``docs/deploy.md`` with the
renders for a production host, so the documented configuration is the tested one.

- ``rabbitmq.conf``: the broker's settings (:func:`rabbitmq_conf`).
- ``advanced.config``: the one setting ``rabbitmq.conf`` cannot hold
  (:func:`advanced_config`).
- ``definitions.json``: the vhost, the users ``stalwart`` (stalwart's parts,
  every right) and ``client`` (foreign publishers: may publish on the
  stalwart exchange except ``sys.*``), and the quorum-queue policy
  (:func:`definitions`), imported by each node at boot.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ADVANCED_CONFIG",
    "CLIENT_USER",
    "DEV_PASSWORDS",
    "JOIN_STEPS",
    "POLICY_NAME",
    "STALWART_USER",
    "definitions",
    "definitions_json",
    "password_hash",
    "rabbitmq_conf",
]

STALWART_USER: Final = "stalwart"
CLIENT_USER: Final = "client"
# The development cluster's passwords; a deployment sets its own (docs/deploy.md).
DEV_PASSWORDS: Final = {STALWART_USER: "stalwart", CLIENT_USER: "client"}
POLICY_NAME: Final = "stalwart-quorum"
# rabbitmqctl steps that join a fresh node to the cluster of node {first}
JOIN_STEPS: Final = (("stop_app",), ("join_cluster", "{first}"), ("start_app",))

# Settings every node of the cluster shares, with why (the comments go into the file).
_SHARED: Final = (
    ("# a node cut off from the majority pauses: clients move to the majority", ""),
    ("cluster_partition_handling", "pause_minority"),
    ("# peers notice a lost node within 10-15 s, clients within 30 s, not minutes", ""),
    ("net_ticktime", "10"),
    ("heartbeat", "10"),
    ("# leaders of new quorum queues spread over the nodes", ""),
    ("queue_leader_locator", "balanced"),
)


# stalwart's retry waits are quorum queues that dead-letter each message back to its
# work queue when its delay is over (at least once). A hop the work queue did not
# confirm, as while its leader moves to another node, is sent again only after
# dead_letter_worker_publisher_confirm_timeout: 180 s by default, which held
# retries for minutes after each node loss. rabbitmq.conf has no key for it.
ADVANCED_CONFIG: Final = """\
%% a retry's dead-letter hop that its work queue did not confirm (its leader was
%% moving to another node) is sent again after 5 s, not the default 3 minutes
[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}].
"""


def rabbitmq_conf(listener: str, definitions_path: str) -> str:
    """``rabbitmq.conf`` of one node listening for AMQP on ``listener`` (``host:port``)."""
    lines = [f"listeners.tcp.default = {listener}"]
    for key, value in _SHARED:
        lines.append(key if key.startswith("#") else f"{key} = {value}")
    lines += [
        "# users, permissions and policies; a reboot does not undo later password changes",
        "definitions.import_backend = local_filesystem",
        f"definitions.local.path = {definitions_path}",
        "definitions.skip_if_unchanged = true",
    ]
    return "\n".join(lines) + "\n"


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password))."""
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def _salt(user: str) -> bytes:
    # Fixed per user, so that the rendered file (and the one in the docs) is stable.
    return hashlib.sha256(f"stalwart-salt:{user}".encode()).digest()[:4]


def definitions(
    passwords: Mapping[str, str] = DEV_PASSWORDS, exchange: str = "stalwart"
) -> dict[str, Any]:
    """Vhost ``/``, the two users, their permissions and the quorum-queue policy.

    ``client`` may declare the exchanges and directory queue a stalwart
    publisher declares at start, publish on ``exchange`` except ``sys.*``
    (a topic permission the broker enforces), and read nothing.
    """
    escaped = exchange.replace(".", "\\.")
    users: list[dict[str, Any]] = [
        {
            "name": name,
            "password_hash": password_hash(passwords[name], _salt(name)),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
            "limits": {},
        }
        for name in (STALWART_USER, CLIENT_USER)
    ]
    return {
        "vhosts": [{"name": "/"}],
        "users": users,
        "permissions": [
            {"user": STALWART_USER, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
            {
                "user": CLIENT_USER,
                "vhost": "/",
                "configure": f"^{escaped}(\\.dlx|\\.directory)?$",
                "write": f"^{escaped}$",
                "read": "^$",
            },
        ],
        "topic_permissions": [
            {
                "user": CLIENT_USER,
                "vhost": "/",
                "exchange": exchange,
                "write": "^(?!sys\\.).*",
                "read": ".*",
            }
        ],
        "policies": [
            {
                "vhost": "/",
                "name": POLICY_NAME,
                "pattern": f"^{escaped}\\.",
                "apply-to": "queues",
                "priority": 0,
                "definition": {"queue-leader-locator": "balanced"},
            }
        ],
    }


def definitions_json(passwords: Mapping[str, str] = DEV_PASSWORDS) -> str:
    """:func:`definitions` as the file a node imports."""
    return json.dumps(definitions(passwords), indent=2) + "\n"
