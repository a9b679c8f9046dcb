"""Who may do what on the cluster: one principal per role, and exactly the grants that role needs.

The roles follow the processes: each model's hosts (``host-<model>``), the four stream
processors (``drift``, ``aggregator``, ``controller``, ``shadow``; ``streams`` when one worker
runs them all), ``client`` (produces requests and labels, reads predictions and routing
updates) and ``admin`` (creates topics, reads everything for the monitor and checks; a super
user). The one reader that dead-letters a topic's bad records may write its ``.dlq``. Grants
are plain records here; ``fedrift.provision`` applies them as Kafka ACLs, each role as the user
``<topic prefix><role>``. What ACLs cannot express (a principal that may write a shared topic
may write any key on it) is in ``docs/security.md``.

>>> from fedrift.topics import TopicCatalog
>>> cat = TopicCatalog(prefix="p.", models=("linear",))
>>> [g.name for g in grants("aggregator", cat, replicas=1) if g.resource == "topic" and "read" in g.operations]
['p.hpo.metrics', 'p.hpo.keys', 'p.hpo.triggers', 'p.fedrift-aggregator-']
>>> any(g.name == "p.routing.weights" and "write" in g.operations for g in grants("host-linear", cat, 1))
False
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fedrift.topics import (
    DEPLOYMENTS,
    DRIFT_SIGNALS,
    FEEDBACK,
    HOST_PROGRESS,
    HPO_AGGREGATES,
    HPO_KEYS,
    HPO_METRICS,
    HPO_TRIGGERS,
    MODEL_STATUS,
    PREDICTIONS,
    REQUESTS,
    ROUTING_WEIGHTS,
    SHADOW_RESULTS,
    TopicCatalog,
)

ADMIN = "admin"
CLIENT = "client"
PROCESSORS = ("drift", "aggregator", "controller", "shadow")
ALL_PROCESSORS = "streams"


PREFIX = re.compile(r"([A-Za-z0-9_]+\.)?")
MODEL_ID = re.compile(r"[a-z0-9_]+")


ROLE_NAME = re.compile(rf"(?:{'|'.join((CLIENT, *PROCESSORS, ALL_PROCESSORS))}|host-[a-z0-9_]+)")


def is_deployment_user(user: str, prefix: str) -> bool:
    """Whether ``user`` is a role principal of the deployment under ``prefix`` (one provisioning
    may manage), as opposed to another deployment's or an operator's own.

    >>> [is_deployment_user(u, p) for u, p in (("p.host-gone", "p."), ("q.client", "p."), ("p.client", ""))]
    [True, False, False]
    """
    return user.startswith(prefix) and ROLE_NAME.fullmatch(user[len(prefix):]) is not None


def check_names(prefix: str, models: tuple[str, ...]) -> None:
    """Refuse a topic prefix or model id under which one deployment's principals, groups or
    topics could fall under another's grants: a prefix is empty or one word ending in ".", and
    not a role's own group prefix; a model id is lower-case letters, digits and "_".

    >>> check_names("prod.", ("linear",))
    >>> check_names("client.", ())
    Traceback (most recent call last):
    ...
    ValueError: FEDRIFT_TOPIC_PREFIX='client.' is a role's own group prefix; choose another
    """
    if not PREFIX.fullmatch(prefix):
        raise ValueError(f"FEDRIFT_TOPIC_PREFIX={prefix!r}: empty, or letters, digits and _ ending in one '.' "
                         "(e.g. 'prod.'), so no deployment's names fall under another's")
    if prefix[:-1] in (ADMIN, CLIENT, *PROCESSORS, ALL_PROCESSORS, "host"):
        raise ValueError(f"FEDRIFT_TOPIC_PREFIX={prefix!r} is a role's own group prefix; choose another")
    bad = [m for m in models if not MODEL_ID.fullmatch(m)]
    if bad:
        raise ValueError(f"model id(s) {bad}: lower-case letters, digits and _ only")


@dataclass(frozen=True)
class Access:
    """The base topics a role reads and writes, and those whose bad records it dead-letters
    (it owns their ``.dlq``: one reader per topic, so a record is dead-lettered once)."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    dead_letters: tuple[str, ...] = ()


HOST = Access(reads=(REQUESTS, FEEDBACK, DEPLOYMENTS, HPO_TRIGGERS, HPO_KEYS, HOST_PROGRESS),
              writes=(PREDICTIONS, SHADOW_RESULTS, MODEL_STATUS, HPO_METRICS, HPO_KEYS, HOST_PROGRESS),
              dead_letters=(REQUESTS, FEEDBACK, DEPLOYMENTS, HPO_TRIGGERS, HPO_KEYS))
ACCESS: dict[str, Access] = {
    CLIENT: Access(reads=(PREDICTIONS, ROUTING_WEIGHTS), writes=(REQUESTS, FEEDBACK)),
    "drift": Access(reads=(REQUESTS, MODEL_STATUS), writes=(DRIFT_SIGNALS, HPO_TRIGGERS)),
    "aggregator": Access(reads=(HPO_METRICS, HPO_KEYS, HPO_TRIGGERS), writes=(HPO_AGGREGATES, HPO_TRIGGERS),
                         dead_letters=(HPO_METRICS,)),
    "controller": Access(reads=(MODEL_STATUS, REQUESTS, DRIFT_SIGNALS, DEPLOYMENTS, HPO_AGGREGATES, ROUTING_WEIGHTS),
                         writes=(REQUESTS, ROUTING_WEIGHTS, DEPLOYMENTS),
                         dead_letters=(MODEL_STATUS, DRIFT_SIGNALS, HPO_AGGREGATES)),
    "shadow": Access(reads=(SHADOW_RESULTS, DEPLOYMENTS), writes=(DEPLOYMENTS,), dead_letters=(SHADOW_RESULTS,)),
}
ACCESS[ALL_PROCESSORS] = Access(*(tuple(dict.fromkeys(t for p in PROCESSORS for t in getattr(ACCESS[p], f)))
                                  for f in ("reads", "writes", "dead_letters")))


@dataclass(frozen=True)
class Grant:
    """Allow ``operations`` on one resource (``topic``, ``group`` or ``transactional_id``), named
    exactly (``literal``) or by its start (``prefixed``)."""

    resource: str
    name: str
    operations: tuple[str, ...]
    pattern: str = "literal"


def host_role(model: str) -> str:
    return f"host-{model}"


def faust_app_id(prefix: str, role: str) -> str:
    """The Faust app (and consumer group) id of a stream-processor role."""
    return f"{prefix}fedrift-{role}"


def roles(catalog: TopicCatalog) -> list[str]:
    """Every role of a deployment of ``catalog``'s pool, besides the admin."""
    return [CLIENT, *PROCESSORS, ALL_PROCESSORS, *(host_role(m) for m in catalog.models)]


def access(role: str) -> Access:
    if role.startswith("host-"):
        return HOST
    if role not in ACCESS:
        raise KeyError(f"unknown role {role!r}")
    return ACCESS[role]


def grants(role: str, catalog: TopicCatalog, replicas: int) -> list[Grant]:
    """Everything ``role`` may do on ``catalog``'s topics, groups and transactional ids."""
    a, name = access(role), catalog.name
    out = [Grant("topic", name(t), ("read",)) for t in a.reads]
    out += [Grant("topic", name(t), ("write",)) for t in a.writes]
    out += [Grant("topic", catalog.dlq(name(t)), ("write",)) for t in a.dead_letters]
    out.append(Grant("group", f"{catalog.prefix}{role}.", ("read",), "prefixed"))  # its short-lived readers
    if role.startswith("host-"):
        ids = [f"{catalog.prefix}host.{role.removeprefix('host-')}-{r}" for r in range(replicas)]
        out += [Grant("group", g, ("read",)) for i in ids for g in (i, f"{i}.control")]
        out += [Grant("transactional_id", i, ("write", "describe")) for i in ids]
    if role in (*PROCESSORS, ALL_PROCESSORS):
        app = faust_app_id(catalog.prefix, role)
        out.append(Grant("group", app, ("read",)))
        out.append(Grant("topic", f"{app}-", ("create", "read", "write", "describe_configs"), "prefixed"))
    return out
