from dataclasses import fields
from pathlib import Path

import pytest

from fedrift.config import ENV, Settings
from fedrift.topics import BASE_TOPICS, TopicCatalog, deployment_key, deployments_in_force


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


def test_readme_documents_every_setting():
    """Each top-level setting by name, each stage group by its ``<PREFIX><FIELD>`` pattern."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    groups = {f.metadata["group"] for f in fields(Settings) if "group" in f.metadata}
    named = {e for e in ENV if not any(e.startswith(g) for g in groups)}
    assert sorted(e for e in named if f"`{e}`" not in readme) == []
    assert sorted(g for g in groups if f"`{g}<FIELD>`" not in readme) == []


def test_catalog_covers_the_architecture_with_prefix_and_dlqs():
    cat = TopicCatalog(prefix="p.", models=("m1", "m2"), partitions=4, replication_factor=3)
    specs = {t.name: t for t in cat.specs()}
    compacted = {n for n, t in specs.items() if t.cleanup == "compact"}
    assert compacted == {
        "p.routing.weights", "p.hpo.aggregates", "p.model.status", "p.deployments", "p.hpo.keys", "p.host.progress"
    }
    assert not any("routed" in n for n in specs)  # hosts read inference.requests themselves
    assert specs["p.inference.requests.dlq"].record == "DeadLetter"
    assert all(t.replication_factor == 3 for t in specs.values())
    assert specs["p.inference.requests"].partitions == 4
    assert specs["p.inference.requests"].config()["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert len(specs) == 2 * len(BASE_TOPICS)
    with pytest.raises(KeyError):
        cat.record_of("other.topic")


def _compacted(records: list[dict]) -> dict[str, dict]:
    """What a compacted topic keeps: the latest record per key."""
    latest: dict[str, dict] = {}
    for d in records:
        latest[deployment_key(d)] = d
    return latest


def test_deployments_in_force_survive_compaction_per_lifecycle():
    def dep(action: str, round_id: str = "", model: str = "hat") -> dict:
        return {"model": model, "action": action, "round_id": round_id, "config_id": f"c-{round_id}"}

    history = [
        dep("SHADOW_START", "r1"),
        dep("PROMOTE", "r1"),
        dep("SHADOW_START", "r2"),  # a second round's shadow is running ...
        dep("PRUNE"),  # ... when the controller prunes the model
        dep("SHADOW_START", "r1", model="arf"),
        dep("REJECT", "r1", model="arf"),
    ]
    in_force = deployments_in_force(_compacted(history).values())
    assert [(d["model"], d["action"], d["round_id"]) for d in in_force] == [
        ("hat", "PROMOTE", "r1"),
        ("hat", "SHADOW_START", "r2"),
        ("hat", "PRUNE", ""),
    ]
    restored = deployments_in_force(_compacted([*history, dep("RESTORE")]).values())
    assert [d["action"] for d in restored] == ["PROMOTE", "SHADOW_START"]


def test_every_field_of_a_stage_config_is_a_setting_and_reaches_the_children():
    from fedrift.config import ENV, Settings, to_env
    from fedrift.core.fhpo import FhpoConfig

    s = Settings.from_env({"FEDRIFT_FHPO_N_LOCAL": "5", "FEDRIFT_ROUTING_SHARE": "1e-4", "FEDRIFT_DRIFT_WINDOW": "100"})
    assert (s.fhpo.n_local, s.routing.share, s.drift.window) == (5, 1e-4, 100)
    assert s.fhpo.holdout == FhpoConfig().holdout  # the rest keep their defaults
    assert Settings.from_env(to_env(s)) == s
    assert {f"FEDRIFT_FHPO_{name.upper()}" for name in FhpoConfig.__dataclass_fields__} <= set(ENV)
