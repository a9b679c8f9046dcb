"""Typed records: one ``TypedDict`` per Avro record, generated from the newest ``.avsc`` of each
by ``python -m schemas.typegen``. Do not edit; evolve the ``.avsc`` and regenerate."""

from __future__ import annotations

from typing import Literal, TypedDict


class InferenceRequest(TypedDict):
    """One inference request from a client; the label is present when it is known at request
    time."""

    id: str
    event_time: int
    features: list[float]
    label: int | None


class Feedback(TypedDict):
    """A label that arrives after its request."""

    id: str
    label: int
    time: int


class RoutedRequest(TypedDict):
    """A request (or a forwarded late label) sent by the router to the hosts of one model. Every
    model gets every request; exactly one serves it."""

    request: InferenceRequest
    model: str
    routing_version: int
    shadow: bool
    feedback: bool
    serve: bool


class Prediction(TypedDict):
    """The one production prediction for a request."""

    request_id: str
    model: str
    host: str
    config_id: str
    prediction: int | None
    probabilities: dict[str, float]
    latency_ms: float
    routing_version: int
    event_time: int


class FeatureShift(TypedDict):
    """FeatureShift"""

    feature: str
    shift: float


class DriftSignal(TypedDict):
    """The drift analyzer's numeric signal after one window of inputs or outcomes."""

    analyzer: str
    time: int
    position: int
    score: float
    threshold: float
    drifted: bool
    source: str
    components: dict[str, float]
    top_features: list[FeatureShift]


class LeaderboardEntry(TypedDict):
    """LeaderboardEntry"""

    config_id: str
    score: float
    score_std: float
    agents: int


class AggregateResult(TypedDict):
    """The aggregator's best configuration for one model after a round."""

    round_id: str
    model: str
    best_config_id: str
    best_config_json: str
    score: float
    score_std: float
    agents: list[str]
    leaderboard: list[LeaderboardEntry]


class PrunedModel(TypedDict):
    """PrunedModel"""

    model: str
    reason: str


class RoutingWeights(TypedDict):
    """The controller's current routing weights and the components that produced them."""

    version: int
    time: int
    weights: dict[str, float]
    historical: dict[str, float]
    alignment: dict[str, float]
    drift_compensation: dict[str, float]
    pruned: list[PrunedModel]


class ShadowResult(TypedDict):
    """Production and shadow predictions on the same request, for paired comparison."""

    request_id: str
    model: str
    host: str
    production_config_id: str
    shadow_config_id: str
    production_prediction: int
    shadow_prediction: int
    label: int | None
    production_latency_ms: float
    shadow_latency_ms: float


class Deployment(TypedDict):
    """An instruction to the hosts of one model, with the evidence behind it."""

    model: str
    action: Literal["SHADOW_START", "PROMOTE", "REJECT", "PRUNE", "RESTORE"]
    config_id: str
    config_json: str
    round_id: str
    time: int
    reason: str
    evidence: dict[str, float]


class DeadLetter(TypedDict):
    """A record a consumer could not decode or validate, kept whole with the reason."""

    source_topic: str
    source_partition: int
    source_offset: int
    error_type: str
    error: str
    consumer: str
    time: int
    key: bytes | None
    raw: bytes | None


class InputOffset(TypedDict):
    """The position of one input partition."""

    topic: str
    partition: int
    offset: int


class HostProgress(TypedDict):
    """A model host's input offsets, written in the same Kafka transaction as the outputs of the
    batch they end. A restarted host replays silently up to these positions, so this record, not
    a separate offset fetch, says what that transaction committed."""

    host: str
    time: int
    offsets: list[InputOffset]


class AgentKey(TypedDict):
    """A model host's long-term public keys for secure aggregation, self-signed. v2 adds the
    Ed25519 key that signs everything the host publishes for secure aggregation; peers pin it at
    first sight and refuse records it did not sign. public_key (X25519) receives the peers'
    encrypted round shares."""

    host: str
    model: str
    public_key: bytes
    created_ms: int
    signing_key: bytes
    signature: bytes


class RoundKeys(TypedDict):
    """A host's keys for one secure-aggregation round: its fresh X25519 mask key and, for each
    peer, that peer's Shamir share of the host's self-mask seed and mask key, sealed (AES-GCM)
    for that peer alone. Signed with the host's pinned Ed25519 key. On hpo.keys."""

    round_id: str
    model: str
    agent: str
    mask_key: bytes
    shares: dict[str, bytes]
    signature: bytes


class UnmaskRequest(TypedDict):
    """Secure aggregation's last step: the aggregator names the round's survivors (their masked
    metrics arrived) and the dropped (masked with, never arrived). Each survivor answers the
    first request of a round only, with its shares of the survivors' self-mask seeds and of the
    dropped hosts' mask keys. v2 replaces the per-configuration pairwise-mask recovery. On
    hpo.triggers, beside HpoTrigger."""

    round_id: str
    model: str
    time: int
    survivors: list[str]
    dropped_agents: list[str]


class HpoTrigger(TypedDict):
    """Start one round of federated hyperparameter optimisation. v2 adds as_of (hosts tune on
    their data up to the drift, however late the trigger reaches them) and design."""

    round_id: str
    time: int
    reason: str
    drift_score: float
    models: list[str]
    as_of: int
    design: str


class TrialMetric(TypedDict):
    """One FHPO agent's differentially-private score of one configuration. v5 adds the agent's
    Ed25519 signature over every field, so the aggregator refuses a metric another principal
    wrote in its name (fedrift/core/signatures.py)."""

    round_id: str
    model: str
    agent: str
    config_id: str
    config_json: str
    noised_quality: float
    noised_latency_ms: float
    slice_size: int
    epsilon_spent: float
    masked_value: int | None
    masked_with: list[str]
    mask_key: bytes
    noise_std: float
    signature: bytes


class UnmaskShare(TypedDict):
    """A survivor's answer to an UnmaskRequest: its Shamir shares (x = share_index) of each
    survivor's self-mask seed and of each dropped host's mask key; never both for one host. v3
    adds the agent's Ed25519 signature over every field. On hpo.metrics, beside TrialMetric."""

    round_id: str
    model: str
    agent: str
    share_index: int
    seed_shares: dict[str, bytes]
    key_shares: dict[str, bytes]
    signature: bytes


class ModelStatus(TypedDict):
    """A model host's periodic health report. v5 adds as_of: the event time of the newest own
    request the host had learned, so the drift analyzer places an error-drift flag where in the
    stream it arose."""

    host: str
    model: str
    config_id: str
    time: int
    window_quality: float
    n_seen: int
    error_drift: bool
    input_sketch: list[float]
    epsilon_spent: float
    n_correct: int
    learned_digest: str
    n_peer_learned: int
    peer_digest: str
    as_of: int
