"""A group of hosts running secure aggregation's host side, with their keys exchanged, and an
aggregator's view of what they publish: what the privacy and aggregation tests drive."""

from __future__ import annotations

from fedrift.core import secagg
from fedrift.core.aggregator import RoundBook
from fedrift.core.masking import SecureAggregation

MODEL = "m"


def group(n: int = 3, threshold: int = 3) -> dict[str, SecureAggregation]:
    """``n`` hosts ``m-0``.. that pinned each other's signed keys."""
    ids = {f"{MODEL}-{r}": secagg.Identity.generate() for r in range(n)}
    hosts = {h: SecureAggregation(MODEL, h, ids[h], set(ids) - {h}, n, threshold) for h in ids}
    for host in hosts.values():
        for other in hosts.values():
            assert host.learn_key(other.key_record(0)) is None
    return hosts


def exchange(hosts: dict[str, SecureAggregation], round_id: str, joined=None) -> None:
    """Each host in ``joined`` (default all) sends its round keys to every host."""
    keys = [hosts[h].join(round_id) for h in (joined or hosts)]
    for host in hosts.values():
        for k in keys:
            if k is not None:
                assert host.on_round_keys(k) is None


def metric(host: SecureAggregation, round_id: str, cid: str, value: float, size: int = 100) -> dict:
    """The TrialMetric a host publishes for ``value`` (quality × size) of a shared configuration."""
    masked, peers, mask_key = host.mask(round_id, {cid: value})
    return host.sign_metric({
        "model": MODEL, "round_id": round_id, "agent": host.host, "config_id": cid, "config_json": "{}",
        "noised_quality": float("nan"), "slice_size": size, "masked_value": masked[cid], "masked_with": peers,
        "mask_key": mask_key, "noised_latency_ms": 0.1, "epsilon_spent": 0.5, "noise_std": 0.01, "signature": b""})


def clear_metric(host: SecureAggregation, cid: str, quality: float, size: int = 200, round_id: str = "r1") -> dict:
    """The signed TrialMetric of a configuration a host scored alone (in the clear, ε-DP)."""
    return host.sign_metric({
        "model": MODEL, "round_id": round_id, "agent": host.host, "config_id": cid, "config_json": "{}",
        "noised_quality": quality, "slice_size": size, "masked_value": None, "masked_with": [], "mask_key": b"",
        "noised_latency_ms": 0.1, "epsilon_spent": 0.5, "noise_std": 0.01, "signature": b""})


def book(n: int = 3, threshold: int = 3, timeout_s: float = 10.0,
         hosts: dict[str, SecureAggregation] | None = None, triggered=("r1", "r2")) -> RoundBook:
    """An aggregator that pinned the keys of ``hosts`` and saw the triggers of rounds ``triggered``."""
    rounds = RoundBook(replicas=n, expected_per_agent=1, timeout_s=timeout_s, threshold=threshold)
    for host in (hosts or {}).values():
        assert rounds.on_key(host.key_record(0)) is None
    for round_id in triggered:
        rounds.on_trigger({"round_id": round_id})
    return rounds
