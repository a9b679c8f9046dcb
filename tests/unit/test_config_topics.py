from pathlib import Path

import pytest

from fedrift.config import ENV, Settings
from fedrift.topics import BASE_TOPICS, TopicCatalog


def test_settings_from_env_parse_types():
    s = Settings.from_env(
        {
            "FEDRIFT_PARTITIONS": "6",
            "FEDRIFT_MODELS": "a, b",
            "FEDRIFT_HOME": "/tmp/x",
            "FEDRIFT_SHADOW_FRACTION": "0.5",
        }
    )
    assert (s.partitions, s.models, s.home, s.shadow_fraction) == (6, ("a", "b"), Path("/tmp/x"), 0.5)
    assert s.local and s.bootstrap == "127.0.0.1:9092"


def test_unknown_or_malformed_settings_are_named():
    with pytest.raises(ValueError, match="FEDRIFT_PARTITONS"):
        Settings.from_env({"FEDRIFT_PARTITONS": "3"})
    with pytest.raises(ValueError, match="FEDRIFT_PARTITIONS='three': expected int"):
        Settings.from_env({"FEDRIFT_PARTITIONS": "three"})
    assert "FEDRIFT_BOOTSTRAP_SERVERS" in ENV


def test_catalog_covers_the_architecture_with_prefix_and_dlqs():
    cat = TopicCatalog(prefix="p.", models=("m1", "m2"), partitions=4, replication_factor=3)
    specs = {t.name: t for t in cat.specs()}
    compacted = {n for n, t in specs.items() if t.cleanup == "compact"}
    assert compacted == {"p.routing.weights", "p.hpo.aggregates", "p.model.status", "p.deployments"}
    assert specs["p.inference.routed.m2"].record == "RoutedRequest"
    assert specs["p.inference.requests.dlq"].record == "DeadLetter"
    assert all(t.replication_factor == 3 for t in specs.values())
    assert specs["p.inference.requests"].partitions == 4
    assert specs["p.inference.requests"].config()["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert len(specs) == 2 * (len(BASE_TOPICS) + 2)
    assert cat.record_of("p.inference.routed.m1") == "RoutedRequest"
    with pytest.raises(KeyError):
        cat.record_of("other.topic")
