"""One typed configuration for every fedrift process, read from ``FEDRIFT_*`` environment variables.

Defaults target the local broker that ``fedrift kafka start`` runs on 127.0.0.1:9092.

>>> s = Settings.from_env({"FEDRIFT_TOPIC_PREFIX": "t1.", "FEDRIFT_MODELS": "a,b"})
>>> s.topic_prefix, s.models
('t1.', ('a', 'b'))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fedrift.core.controller import ControllerTuning
from fedrift.core.drift import DriftConfig
from fedrift.core.fhpo import FhpoConfig
from fedrift.core.replica import ReplicaTuning
from fedrift.core.routing import RoutingConfig

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env(name: str, help_: str) -> dict:
    return {"env": name, "help": help_}


def _group(prefix: str, help_: str) -> dict:
    """A stage's own config dataclass: each of its fields is ``<prefix><FIELD>`` (e.g.
    ``FEDRIFT_FHPO_N_LOCAL``), documented by the comment beside the field in its module."""
    return {"group": prefix, "help": help_}


_GROUPS: dict[str, type] = {"drift": DriftConfig, "fhpo": FhpoConfig, "routing": RoutingConfig,
                            "replica": ReplicaTuning, "controller": ControllerTuning}


@dataclass(frozen=True)
class Settings:
    """Process settings. Every field maps to exactly one environment variable (see ``ENV``)."""

    bootstrap_servers: str = field(
        default="", metadata=_env("FEDRIFT_BOOTSTRAP_SERVERS", "Kafka bootstrap servers; empty = local broker")
    )
    topic_prefix: str = field(default="", metadata=_env("FEDRIFT_TOPIC_PREFIX", "prefix for every topic name"))
    partitions: int = field(default=3, metadata=_env("FEDRIFT_PARTITIONS", "partitions of partitioned topics"))
    replication_factor: int = field(
        default=0,
        metadata=_env(
            "FEDRIFT_REPLICATION_FACTOR", "replication factor of new topics; 0 = 3 on 3+ brokers, else 1"
        ),
    )
    retention_ms: int = field(
        default=7 * 24 * 3600 * 1000, metadata=_env("FEDRIFT_RETENTION_MS", "retention of delete-policy topics")
    )
    home: Path = field(
        default=REPO_ROOT / ".fedrift", metadata=_env("FEDRIFT_HOME", "state dir: broker data, logs, Faust data")
    )
    kafka_port: int = field(default=9092, metadata=_env("FEDRIFT_KAFKA_PORT", "first port of the local broker"))
    security_protocol: str = field(
        default="SASL_SSL",
        metadata=_env("FEDRIFT_SECURITY_PROTOCOL", "SASL_SSL, SSL, SASL_PLAINTEXT or PLAINTEXT (debugging only)"),
    )
    sasl_mechanism: str = field(
        default="SCRAM-SHA-512", metadata=_env("FEDRIFT_SASL_MECHANISM", "SASL mechanism (SCRAM-SHA-512/256, PLAIN)")
    )
    credentials_dir: str = field(
        default="",
        metadata=_env("FEDRIFT_CREDENTIALS_DIR", "dir of per-role <role>.json credentials; empty = the local broker's"),
    )
    sasl_username: str = field(
        default="", metadata=_env("FEDRIFT_SASL_USERNAME", "one SASL user for every role without a credentials file")
    )
    sasl_password_file: str = field(
        default="", metadata=_env("FEDRIFT_SASL_PASSWORD_FILE", "file holding FEDRIFT_SASL_USERNAME's password")
    )
    ssl_ca_file: str = field(
        default="", metadata=_env("FEDRIFT_SSL_CA_FILE", "CA certificate(s), PEM; empty = the local broker's CA")
    )
    ssl_cert_file: str = field(
        default="", metadata=_env("FEDRIFT_SSL_CERT_FILE", "client certificate, PEM (mutual TLS)")
    )
    ssl_key_file: str = field(default="", metadata=_env("FEDRIFT_SSL_KEY_FILE", "client private key, PEM"))
    models: tuple[str, ...] = field(
        default=("linear", "hat", "arf", "pa"), metadata=_env("FEDRIFT_MODELS", "comma-separated model ids in the pool")
    )
    replicas: int = field(default=3, metadata=_env("FEDRIFT_REPLICAS", "model-host replicas per model"))
    shared_training: bool = field(
        default=True,
        metadata=_env(
            "FEDRIFT_SHARED_TRAINING",
            "every replica's models learn all partitions' labelled requests, serving only their own "
            "(replicas of one site); false: only their own (replicas at separate sites)",
        ),
    )
    n_features: int = field(
        default=0, metadata=_env("FEDRIFT_N_FEATURES", "expected feature count; 0 = learn from first valid record")
    )
    shadow_fraction: float = field(
        default=0.2, metadata=_env("FEDRIFT_SHADOW_FRACTION", "share of a model's traffic mirrored to its shadow")
    )
    epsilon_budget: float = field(
        default=10.0,
        metadata=_env("FEDRIFT_EPSILON_BUDGET", "ε budget per record of local data, shared by the pool's models"),
    )
    shadow_min_samples: int = field(
        default=200, metadata=_env("FEDRIFT_SHADOW_MIN_SAMPLES", "paired labelled requests before a shadow decision")
    )
    shadow_max_samples: int = field(
        default=5000, metadata=_env("FEDRIFT_SHADOW_MAX_SAMPLES", "paired requests before a shadow times out")
    )
    warm_start: bool = field(
        default=True,
        metadata=_env("FEDRIFT_WARM_START", "a shadow starts from production's learned state where the family allows"),
    )
    cold_start_hpo_at: int = field(
        default=0,  # off: no gain measured on elec or weather, and a round spends ε
        metadata=_env("FEDRIFT_COLD_START_HPO_AT", "requests before one HPO round without drift (0 = none)"),
    )
    hpo_round_timeout_s: float = field(
        default=120.0,
        metadata=_env("FEDRIFT_HPO_ROUND_TIMEOUT_S", "seconds the aggregator waits for every replica of a round"),
    )
    checkpoint_every_s: float = field(
        default=30.0,
        metadata=_env("FEDRIFT_CHECKPOINT_EVERY_S", "seconds between a host's local checkpoints of its models"),
    )
    pending_labels: int = field(
        default=100_000,
        metadata=_env(
            "FEDRIFT_PENDING_LABELS", "requests a host holds for a late label, and labels held for their request"
        ),
    )
    host_batch: int = field(
        default=500, metadata=_env("FEDRIFT_HOST_BATCH", "input records a host handles per transaction, at most")
    )
    host_linger_s: float = field(
        default=0.01,
        metadata=_env("FEDRIFT_HOST_LINGER_S", "seconds a host's batch waits for more records after its first"),
    )
    host_align_idle_ms: int = field(
        default=100,
        metadata=_env(
            "FEDRIFT_HOST_ALIGN_IDLE_MS",
            "ms a host holds a request back for an older one another partition may still deliver",
        ),
    )
    host_idle_status_s: float = field(
        default=1.0,
        metadata=_env(
            "FEDRIFT_HOST_IDLE_STATUS_S", "seconds without input after which a host reports what it learned"
        ),
    )
    host_round_key_wait_s: float = field(
        default=10.0,
        metadata=_env(
            "FEDRIFT_HOST_ROUND_KEY_WAIT_S",
            "seconds a host's finished HPO round waits for its peers' round keys before withholding its shared metrics",
        ),
    )
    host_roster: str = field(
        default="",
        metadata=_env(
            "FEDRIFT_HOST_ROSTER",
            "JSON file of every host's public keys (fedrift roster); only these are trusted. Empty: "
            "pinned at first sight (fedrift run writes one)",
        ),
    )
    identity_dir: str = field(
        default="",
        metadata=_env(
            "FEDRIFT_IDENTITY_DIR",
            "directory of the hosts' private secure-aggregation identities, one file per host. Empty: "
            "FEDRIFT_HOME/hosts",
        ),
    )
    status_every: int = field(default=200, metadata=_env("FEDRIFT_STATUS_EVERY", "events between ModelStatus"))
    seed: int = field(default=0, metadata=_env("FEDRIFT_SEED", "random seed"))
    log_level: str = field(default="info", metadata=_env("FEDRIFT_LOG_LEVEL", "log level"))
    drift: DriftConfig = field(
        default_factory=DriftConfig, metadata=_group("FEDRIFT_DRIFT_", "drift analyzer (fedrift/core/drift.py)")
    )
    fhpo: FhpoConfig = field(
        default_factory=FhpoConfig, metadata=_group("FEDRIFT_FHPO_", "FHPO rounds, DP metrics (fedrift/core/fhpo.py)")
    )
    routing: RoutingConfig = field(
        default_factory=RoutingConfig, metadata=_group("FEDRIFT_ROUTING_", "routing weights (fedrift/core/routing.py)")
    )
    replica: ReplicaTuning = field(
        default_factory=ReplicaTuning, metadata=_group("FEDRIFT_REPLICA_", "host replicas (fedrift/core/replica.py)")
    )
    controller: ControllerTuning = field(
        default_factory=ControllerTuning,
        metadata=_group("FEDRIFT_CONTROLLER_", "routing controller (fedrift/core/controller.py)"),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); unknown ``FEDRIFT_*`` names are errors."""
        environ = os.environ if environ is None else environ
        unknown = sorted(k for k in environ if k.startswith("FEDRIFT_") and k not in ENV)
        if unknown:
            raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(ENV))}")
        values: dict = {}
        for f in fields(cls):
            if "group" in f.metadata:
                values[f.name] = _group_from_env(_GROUPS[f.name](), f.metadata["group"], environ)
                continue
            raw = environ.get(f.metadata["env"])
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(str(f.type), raw, f.metadata["env"])
        return cls(**values)

    @property
    def pool(self) -> tuple[str, ...]:
        """The models every host serves, in the order every host uses."""
        return self.models

    @property
    def local(self) -> bool:
        """True when no broker is configured, so fedrift manages its own local one."""
        return not self.bootstrap_servers

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_servers or f"127.0.0.1:{self.kafka_port}"


def to_env(settings: Settings) -> dict[str, str]:
    """Every setting as its environment variable (the inverse of ``Settings.from_env``).

    >>> env = to_env(Settings(models=("a", "b"), partitions=5))
    >>> env["FEDRIFT_MODELS"], env["FEDRIFT_PARTITIONS"], Settings.from_env(env).models
    ('a,b', '5', ('a', 'b'))
    """
    out = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        if "group" in f.metadata:
            out.update({f.metadata["group"] + g.name.upper(): str(getattr(value, g.name)) for g in fields(value)})
        else:
            out[f.metadata["env"]] = ",".join(value) if isinstance(value, tuple) else str(value)
    return out


def _group_from_env(default: Any, prefix: str, environ: Mapping[str, str]) -> Any:
    """``default`` (a stage config dataclass) with the fields set in ``environ`` replaced."""
    given = {g.name: _parse(str(g.type), environ[prefix + g.name.upper()], prefix + g.name.upper())
             for g in fields(default) if environ.get(prefix + g.name.upper(), "") != ""}
    return replace(default, **given)


def _parse(type_name: str, raw: str, env: str):
    try:
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "Path":
            return Path(raw)
        if type_name == "bool":
            return {"1": True, "true": True, "yes": True, "on": True,
                    "0": False, "false": False, "no": False, "off": False}[raw.strip().lower()]
        if type_name.startswith("tuple"):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return raw
    except (ValueError, KeyError) as exc:
        raise ValueError(f"{env}={raw!r}: expected {type_name}") from exc


ENV: dict[str, str] = {
    name: help_
    for f in fields(Settings)
    for name, help_ in (
        [(f.metadata["group"] + g.name.upper(), f"{f.metadata['help']}: {g.name}") for g in fields(_GROUPS[f.name])]
        if "group" in f.metadata
        else [(f.metadata["env"], f.metadata["help"])]
    )
}
