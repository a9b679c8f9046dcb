"""The role table: least privilege as the threat models state it, and consistent with the topics."""

import pytest

from fedrift import access
from fedrift.topics import BASE_TOPICS, TopicCatalog

CATALOG = TopicCatalog(prefix="p.", models=("linear", "hat"))



def _topics(role: str, op: str) -> set[str]:
    return {g.name for g in access.grants(role, CATALOG, replicas=3)
            if g.resource == "topic" and g.pattern == "literal" and op in g.operations}


def test_no_host_or_client_can_set_routing_or_deployments():
    for role in ("host-linear", "host-hat", "client"):
        assert not _topics(role, "write") & {"p.routing.weights", "p.deployments"}, role
    assert "p.model.status" not in _topics("client", "write")


def test_the_aggregator_reads_only_the_masked_metrics_and_the_hosts_keys():
    # hpo.keys: public keys (to check the metrics' signatures) and round-key shares sealed to peers;
    # hpo.triggers: which rounds were started
    assert _topics("aggregator", "read") == {"p.hpo.metrics", "p.hpo.keys", "p.hpo.triggers"}
    assert not any(t.startswith("p.inference.") for t in _topics("aggregator", "read"))


def test_every_topic_has_a_writer_and_a_reader_and_the_worker_role_is_the_union():
    roles = access.roles(CATALOG)
    written = set().union(*(_topics(r, "write") for r in roles))
    read = set().union(*(_topics(r, "read") for r in roles))
    for spec in BASE_TOPICS:
        assert CATALOG.name(spec.base) in written and CATALOG.name(spec.base) in read, spec.base
    for op in ("read", "write"):
        assert _topics("streams", op) == set().union(*(_topics(p, op) for p in access.PROCESSORS))


def test_a_hosts_groups_and_transactional_ids_are_its_models_own():
    grants = access.grants("host-linear", CATALOG, replicas=2)
    ids = {g.name for g in grants if g.resource == "transactional_id"}
    assert ids == {"p.host.linear-0", "p.host.linear-1"}
    groups = {g.name for g in grants if g.resource == "group" and g.pattern == "literal"}
    assert groups == {"p.host.linear-0", "p.host.linear-0.control", "p.host.linear-1", "p.host.linear-1.control"}


def test_only_stream_processors_get_their_faust_apps_topics():
    prefixed = {r: [g for g in access.grants(r, CATALOG, 1) if g.resource == "topic" and g.pattern == "prefixed"]
                for r in access.roles(CATALOG)}
    assert {r for r, g in prefixed.items() if g} == {*access.PROCESSORS, access.ALL_PROCESSORS}
    assert [g.name for g in prefixed["controller"]] == ["p.fedrift-controller-"]


R, W, PRE = ("read",), ("write",), "prefixed"
FAUST = ("create", "read", "write", "describe_configs")
EXPECTED = {  # every grant of every role, spelled out: a wider table fails here
    "client": {("topic", "p.inference.predictions", R), ("topic", "p.routing.weights", R),
               ("topic", "p.inference.requests", W), ("topic", "p.inference.feedback", W),
               ("group", "p.client.", R, PRE)},
    "drift": {("topic", "p.inference.requests", R), ("topic", "p.model.status", R), ("topic", "p.drift.signals", W),
              ("topic", "p.hpo.triggers", W), ("group", "p.drift.", R, PRE), ("group", "p.fedrift-drift", R),
              ("topic", "p.fedrift-drift-", FAUST, PRE)},
    # hpo.keys: the hosts' public keys, to check the signatures on their metrics and answers
    "aggregator": {("topic", "p.hpo.metrics", R), ("topic", "p.hpo.keys", R), ("topic", "p.hpo.aggregates", W),
                   ("topic", "p.hpo.triggers", R), ("topic", "p.hpo.triggers", W),
                   ("topic", "p.hpo.metrics.dlq", W), ("group", "p.aggregator.", R, PRE),
                   ("group", "p.fedrift-aggregator", R), ("topic", "p.fedrift-aggregator-", FAUST, PRE)},
    "controller": {("topic", f"p.{t}", R) for t in ("model.status", "inference.requests", "drift.signals",
                                                     "deployments", "hpo.aggregates", "routing.weights")}
                  | {("topic", f"p.{t}", W) for t in ("inference.requests", "routing.weights", "deployments",
                                                       "model.status.dlq", "drift.signals.dlq", "hpo.aggregates.dlq")}
                  | {("group", "p.controller.", R, PRE), ("group", "p.fedrift-controller", R),
                     ("topic", "p.fedrift-controller-", FAUST, PRE)},
    "shadow": {("topic", "p.shadow.results", R), ("topic", "p.deployments", R), ("topic", "p.deployments", W),
               ("topic", "p.shadow.results.dlq", W), ("group", "p.shadow.", R, PRE), ("group", "p.fedrift-shadow", R),
               ("topic", "p.fedrift-shadow-", FAUST, PRE)},
    "host-linear": {("topic", f"p.{t}", R) for t in ("inference.requests", "inference.feedback", "deployments",
                                                      "hpo.triggers", "hpo.keys", "host.progress")}
                   | {("topic", f"p.{t}", W) for t in ("inference.predictions", "shadow.results", "model.status",
                                                        "hpo.metrics", "hpo.keys", "host.progress",
                                                        "inference.requests.dlq", "inference.feedback.dlq",
                                                        "deployments.dlq", "hpo.triggers.dlq", "hpo.keys.dlq")}
                   | {("group", "p.host-linear.", R, PRE)}
                   | {("group", g, R) for g in ("p.host.linear-0", "p.host.linear-0.control", "p.host.linear-1",
                                                 "p.host.linear-1.control")}
                   | {("transactional_id", f"p.host.linear-{r}", ("write", "describe")) for r in (0, 1)},
}


def test_each_role_has_exactly_its_grants():
    for role, expected in EXPECTED.items():
        got = {(g.resource, g.name, g.operations) + ((PRE,) if g.pattern == PRE else ())
               for g in access.grants(role, CATALOG, replicas=2)}
        assert got == expected, (role, got - expected, expected - got)


def test_a_prefix_or_model_id_that_could_fall_under_another_deployments_grants_is_refused():
    for prefix in ("", "prod.", "t1a2b3.", "run_17."):
        access.check_names(prefix, ("linear", "gnb"))
    for prefix in ("a", "a.b.", "x.host-", "shadow.", "client.", "host.", "fedrift-drift-", "p-1."):
        with pytest.raises(ValueError, match="FEDRIFT_TOPIC_PREFIX"):
            access.check_names(prefix, ())
    with pytest.raises(ValueError, match="model id"):
        access.check_names("p.", ("linear", "client-x"))
