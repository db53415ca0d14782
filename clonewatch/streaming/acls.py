"""Kafka ACLs for clonewatch's three kinds of client: each may do what its job needs, no more.

On a broker that enforces ACLs (``authorizer.class.name``, KRaft's StandardAuthorizer), a
principal may do nothing that no ACL allows. ``clonewatch kafka acls`` grants, per role:

    shipper   ship, receive      write the access and dead-letter topics
    worker    worker             read the access topic, write decisions and dead letters, and
                                 everything on its own topics (``<app id>-*``: table changelogs,
                                 the campaign stage's topics) and in its consumer group
    reader    decisions, api     read the decisions topic

so a stolen shipper or gateway password can feed traffic in or read decisions, never write
decisions. Granting is idempotent: the broker keeps one copy of an ACL granted twice.

>>> config = StreamingConfig()
>>> for grant in grants("shipper", config):
...     print(grant)
topic clonewatch.access: create, describe, write
topic clonewatch.dead-letters: create, describe, write
>>> [str(g) for g in grants("reader", config)]
['topic clonewatch.decisions: describe, read']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clonewatch.streaming.config import StreamingConfig

ROLES = ("shipper", "worker", "reader")


@dataclass(frozen=True)
class Grant:
    """Operations allowed on one resource (a topic, a group, or names starting with ``name``)."""

    resource: str  # "topic" or "group"
    name: str
    operations: tuple[str, ...]
    prefixed: bool = False

    def __str__(self) -> str:
        return f"{self.resource} {self.name}{'*' if self.prefixed else ''}: {', '.join(sorted(self.operations))}"


def grants(role: str, config: StreamingConfig) -> list[Grant]:
    """What the clients of ``role`` need on the topics and group named by ``config``."""
    own = ("create", "describe")  # a client creates the topics it needs when they are missing (topics.ensure_topics)
    if role == "shipper":
        return [Grant("topic", config.access_topic, (*own, "write")), Grant("topic", config.dead_letter_topic, (*own, "write"))]
    if role == "worker":
        return [
            Grant("topic", config.access_topic, (*own, "read")),
            Grant("topic", config.decisions_topic, (*own, "write")),
            Grant("topic", config.dead_letter_topic, (*own, "write")),
            Grant("topic", f"{config.app_id}-", ("all",), prefixed=True),
            Grant("group", config.app_id, ("all",)),
        ]
    if role == "reader":
        return [Grant("topic", config.decisions_topic, ("describe", "read"))]
    raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")


def acl_bindings(users: Mapping[str, str], config: StreamingConfig) -> list:
    """kafka-python ACLs that allow each user (``users``: role -> user name) its role's grants."""
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    out = []
    for role, user in users.items():
        if not user or any(c in user for c in ",;:* "):
            raise ValueError(f"{role} user {user!r} is not a plain user name")
        for grant in grants(role, config):
            pattern = ResourcePattern(
                ResourceType[grant.resource.upper()], grant.name,
                ACLResourcePatternType.PREFIXED if grant.prefixed else ACLResourcePatternType.LITERAL,
            )  # fmt: skip
            out += [
                ACL(f"User:{user}", "*", ACLOperation[operation.upper()], ACLPermissionType.ALLOW, pattern)
                for operation in grant.operations
            ]
    return out


def apply_acls(admin, users: Mapping[str, str], config: StreamingConfig) -> int:
    """Create the ACLs of :func:`acl_bindings` with ``admin`` (a ``KafkaAdminClient`` connected as
    a user allowed to alter the cluster's ACLs); returns how many were granted. Raises
    ``kafka.errors.KafkaError`` with the broker's reason when one is refused."""
    bindings = acl_bindings(users, config)
    failed = admin.create_acls(bindings)["failed"]  # the error class of each refused ACL
    if failed:
        raise failed[0](f"the broker refused {len(failed)} of {len(bindings)} ACLs")
    return len(bindings)
