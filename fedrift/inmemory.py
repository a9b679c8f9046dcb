"""The pipeline's own stages on an in-memory bus and a virtual clock: what ``fedrift simulate`` runs.

The same objects as the Kafka processes (``ModelReplica`` per host, ``Controller``, ``DriftStage``,
``RoundBook``, ``ShadowStage``, and each host's ``FhpoAgent`` with ``FederatedRounds``), fed the
same records: a request goes to the partition its key hashes to (librdkafka's default
partitioner, CRC-32), to every model's replica that owns that partition; what a stage emits is
delivered to the stages that read its topic, in order, before the next request. Requests arrive
at ``rate`` per second of virtual time; the controller ticks every ``tick_s`` of it.

Differences from the Kafka pipeline that remain, by design:

- delivery is immediate, except for two delays given in seconds of virtual time. A routing-weights
  marker reaches the hosts ``control_delay_s`` after the status that led to it: in Kafka the hosts
  serve behind the stream (holding a request back for time order, batching a transaction) and
  the controller reads the status some milliseconds later, while more requests flow. A status or
  a deployment reaches its readers at once, except a shadow start given in ``shadow_starts``
  (where a pipeline run's host started it: just before the first request it shadowed);
- an HPO round runs on the host's window up to its trigger's ``as_of``, and its metrics are
  delivered ``hpo_latency_s`` later; a host runs it in a worker process while it keeps serving,
  and how long that takes depends on the machine and the pool (2.5–10 s from trigger to shadow
  start with the pool linear, hat, gnb, 3 replicas each, at 125 requests/s on 2 cores). Here too
  the rounds run in a worker process (``fedrift.background_rounds``) while the requests after
  the trigger are served: the same results as in-process, in less wall time on two cores. A host
  whose round ends short of "ok" (budget spent) reports its status when the round's metrics are
  due, as a pipeline host reports it when its round ends;
- the DP noise is a seeded draw (``seed``, ``noise_draw``), the pipeline's a fresh secure one, so
  the two pick different winners wherever candidates' scores lie within the noise. To compare a
  pipeline run with the simulator, ``replayed_rounds`` hands over the aggregates that run
  published per round (its HPO outcome: winners, scores, and no aggregate where its round gave
  none), so the shadows started follow from them; the shadows' tests, promotions, rejections and
  serving are this run's own. This run's own aggregates, when replaced, stay in
  ``log["own_aggregates"]``.
"""

from __future__ import annotations

import heapq
import itertools
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from agents.federated import FederatedRounds
from fedrift.background_rounds import Pending, run_in_background, shared_executor
from fedrift.core.aggregator import RoundBook
from fedrift.core.controller import Controller, ControllerConfig, ControllerTuning
from fedrift.core.drift import DriftAnalyzer, DriftConfig
from fedrift.core.drift_stage import DriftStage
from fedrift.core.fhpo import FhpoAgent, FhpoConfig
from fedrift.core.masking import SecureAggregation
from fedrift.core.models import FAMILIES
from fedrift.core.privacy import PrivacyLedger
from fedrift.core.records import Output
from fedrift.core.replica import ModelReplica, ReplicaConfig, ReplicaTuning
from fedrift.core.routing import RoutingConfig
from fedrift.core.secagg import Identity
from fedrift.core.shadow_stage import ShadowStage
from fedrift.sharing import ModelSharing
from schemas.records import AggregateResult, Deployment, InferenceRequest


@dataclass(frozen=True)
class PipelineConfig:
    pool: tuple[str, ...]
    replicas: int = 3
    partitions: int = 3
    n_features: int = 0  # 0: the first valid request of each partition fixes it
    shared_training: bool = True  # every replica learns every partition's labels (``ModelReplica.on_peer_request``)
    seed: int = 0
    noise_draw: int = 0  # which draw of the DP noise (the pipeline's is a fresh secure one each run)
    rate: float = 250.0  # requests per second of virtual time
    tick_s: float = 1.0  # how often the controller's clock is checked (``fedrift.core.controller``)
    hpo_latency_s: float = 8.0  # trigger to metrics published: hosts optimise beside serving (measured)
    control_delay_s: float = 0.0  # a request's status to the routing weights it leads to reaching the hosts
    hpo_round_timeout_s: float = 120.0  # the aggregator closes a round missing metrics after this (virtual time)
    # a pipeline run's AggregateResults per HPO round, in its triggers' order, replayed in place of this
    # run's own: which configuration won follows from that run's DP noise, a fresh secure draw
    replayed_rounds: tuple[tuple[dict, ...], ...] = ()
    # a pipeline run's (host, shadow config id, first request that host answered with that shadow):
    # where each host's shadow started, as its deployment reached it between two requests
    shadow_starts: tuple[tuple[str, str, str], ...] = ()
    shadow_fraction: float = 0.2
    status_every: int = 200
    pending_labels: int = 100_000
    shadow_min: int = 200
    shadow_max: int = 5000
    epsilon_budget: float = 10.0
    cold_start_at: int = 0
    warm_start: bool = True
    drift: DriftConfig = field(default_factory=DriftConfig)
    fhpo: FhpoConfig = field(default_factory=FhpoConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    replica: ReplicaTuning = field(default_factory=ReplicaTuning)
    controller: ControllerTuning = field(default_factory=ControllerTuning)
    share_models: bool = True  # identical replicas' models are one object (``fedrift.sharing``): same results
    background_rounds: bool = True  # HPO rounds in a worker process beside serving: same results, less wall time


def partition_of(key: str, partitions: int) -> int:
    """The partition a keyed record lands in (librdkafka's default: CRC-32 of the key)."""
    return zlib.crc32(key.encode()) % partitions


class InMemoryPipeline:
    def __init__(self, cfg: PipelineConfig, feature_names: list[str] | None = None) -> None:
        unknown = [m for m in cfg.pool if m not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; the pool has {sorted(FAMILIES)}")
        self.cfg = cfg
        self.sharing = ModelSharing()
        self.replicas = {m: [self._replica(m, r) for r in range(cfg.replicas)] for m in cfg.pool}
        for m in cfg.pool:
            self._share(m)
        self.rounds = {m: [self._rounds(m, r) for r in range(cfg.replicas)] for m in cfg.pool}
        for hosts in self.rounds.values():  # each host pins its peers' signed keys, as from hpo.keys
            for a in hosts:
                for b in hosts:
                    if a is not b and a.secure.learn_key(b.secure.key_record(0)) is not None:
                        raise RuntimeError(f"{a.host_id} refused {b.host_id}'s key")
        self.controller = Controller(ControllerConfig(cfg.pool, cfg.partitions, cfg.routing, cfg.controller))
        self.drift = DriftStage(DriftAnalyzer(cfg.drift, cfg.seed, feature_names), "drift", "sim", cfg.cold_start_at)
        fh = cfg.fhpo
        self.aggregator = RoundBook(cfg.replicas, 1 + fh.n_shared + fh.n_local, timeout_s=cfg.hpo_round_timeout_s,
                                    threshold=fh.min_survivors)
        for hosts in self.rounds.values():  # the aggregator pins every host's key too
            for a in hosts:
                if self.aggregator.on_key(a.secure.key_record(0)) is not None:
                    raise RuntimeError(f"the aggregator refused {a.host_id}'s key")
        self.shadow = ShadowStage(0.05, cfg.shadow_min, cfg.shadow_max)
        self.start_at = {(host, config): rid for host, config, rid in cfg.shadow_starts}
        self.start_ids = set(self.start_at.values())
        self.passed: set[str] = set()  # the requests of ``start_at`` the stream has reached
        self.held: dict[str, list[tuple[ModelReplica, Deployment]]] = {}  # request id -> shadows starting there
        self.bus: deque[Output] = deque()
        self.later: list[tuple[int, int, Later]] = []  # (due time, seq, outputs): rounds, markers
        self.round_of: dict[tuple[str, int], Pending] = {}  # (model, replica) -> its latest round
        self.seq = itertools.count()
        self.n = 0  # requests so far
        self.now_ms = 0
        self.next_tick_ms = int(cfg.tick_s * 1000)
        self.log: dict[str, list] = {k: [] for k in ("weights", "drift", "triggers", "aggregates", "deployments")}
        if cfg.replayed_rounds:
            self.log["own_aggregates"] = []  # what this run's rounds concluded, beside the replayed ones

    def _replica(self, model: str, r: int) -> ModelReplica:
        return ModelReplica(FAMILIES[model], ReplicaConfig.of(self.cfg, model, r))

    def _share(self, model: str) -> None:
        """Put the replicas' identical production models (and shadows) on shared lines."""
        if not self.cfg.share_models or not FAMILIES[model].pure_predict:
            return
        reps = self.replicas[model]
        for rep, m in zip(reps, self.sharing.share([rep.production for rep in reps]), strict=True):
            rep.production = m
        shadows = [rep for rep in reps if rep.shadow is not None]
        for rep, m in zip(shadows, self.sharing.share([rep.shadow for rep in shadows]), strict=True):
            rep.shadow = m

    def baseline_copy(self, model: str, fresh):
        """``fresh`` (a new default model of ``model``, as a baseline learns it) shared with the
        replicas' production models while they are in the same state."""
        if not self.cfg.share_models or not FAMILIES[model].pure_predict:
            return fresh
        return self.sharing.join(self.replicas[model][0].production, fresh)

    def _rounds(self, model: str, r: int) -> FederatedRounds:
        """The host's FHPO agent and masks; keys derived from the seed, so a run is reproducible."""
        host = f"{model}-{r}"
        agent = FhpoAgent(
            FAMILIES[model],
            host,
            PrivacyLedger.model_share(self.cfg.epsilon_budget, len(self.cfg.pool)),
            self.cfg.fhpo,
            seed=self.cfg.seed * 1000 + r,
            noise_seed=(self.cfg.seed + 7919 * self.cfg.noise_draw) * 1000 + r,
        )
        peers = {f"{model}-{k}" for k in range(self.cfg.replicas)} - {host}
        secure = SecureAggregation(model, host, Identity.generate(), peers, self.cfg.replicas,
                                   self.cfg.fhpo.min_survivors)
        return FederatedRounds(agent, model, host, secure)

    # -- one request ---------------------------------------------------------------------------
    def request(self, rid: str, x: list[float], y) -> tuple[str, object] | None:
        """Serve one labelled request; returns (serving model, its prediction)."""
        self.now_ms = int(1000 * self.n / self.cfg.rate)
        self.n += 1
        p = partition_of(rid, self.cfg.partitions)
        request: InferenceRequest = {"id": rid, "event_time": self.now_ms, "features": x, "label": y}
        served = None
        if rid in self.start_ids:
            self.passed.add(rid)
            self._start_held(rid)
        self.bus.extend(self.drift.on_request(x, self.now_ms, self.now_ms))
        self.controller.on_request(x)
        for model, replicas in self.replicas.items():
            owner = replicas[p % self.cfg.replicas]
            for o in owner.on_request(p, request):
                if o.record == "Prediction":
                    served = (model, o.value["prediction"])
                else:
                    self.bus.append(o)
            if self.cfg.shared_training:
                for rep in replicas:
                    if rep is not owner:
                        rep.on_peer_request(p, request)
        while self.later and self.later[0][0] <= self.now_ms:
            due = heapq.heappop(self.later)[2]
            self.bus.extend(due() if callable(due) else due)
        if self.now_ms >= self.next_tick_ms:
            self.next_tick_ms += int(self.cfg.tick_s * 1000)
            self._emit(self.controller.tick(self.now_ms))
            self.bus.extend(self.aggregator.tick(self.now_ms / 1000, self.now_ms))  # rounds missing metrics
        self._deliver()
        return served

    def _deliver(self) -> None:
        while self.bus:
            o = self.bus.popleft()
            self._emit(self._route(o))

    def _emit(self, outputs: list[Output]) -> None:
        """Put a stage's outputs on the bus; the markers into the request partitions reach the
        hosts ``control_delay_s`` later."""
        delay = int(self.cfg.control_delay_s * 1000)
        for o in outputs:
            if delay and o.record == "RoutingWeights" and o.partition is not None:
                self._later(self.now_ms + delay, [o])
            else:
                self.bus.append(o)

    def _later(self, due_ms: int, outputs: Later) -> None:
        heapq.heappush(self.later, (due_ms, next(self.seq), outputs))

    def _replayed(self, aggregate: AggregateResult) -> AggregateResult | None:
        """For the k-th HPO round, the pipeline's aggregate of the same model in its k-th round, under
        this run's round id (None when it published none), while ``replayed_rounds`` reaches k."""
        k = next(i for i, t in enumerate(self.log["triggers"]) if t["round_id"] == aggregate["round_id"])
        if k >= len(self.cfg.replayed_rounds):
            return aggregate
        theirs = [a for a in self.cfg.replayed_rounds[k] if a["model"] == aggregate["model"]]
        return cast(AggregateResult, {**theirs[0], "round_id": aggregate["round_id"]}) if theirs else None

    def _route(self, o: Output) -> list[Output]:
        # a record reaches a stage as the shells' decode hands it over: typed by its name at run time
        now, v = self.now_ms, cast(Any, o.value)
        if o.record == "ModelStatus":
            return self.controller.on_status(v, now) + self.drift.on_status(v, now)
        if o.record == "ShadowResult":
            return self.shadow.on_result(v, now)
        if o.record == "DriftSignal":
            self.log["drift"].append(v)
            self.controller.on_drift(v)
            return []
        if o.record == "HpoTrigger":
            self.log["triggers"].append(v)
            self.aggregator.on_trigger(v)
            self._later(now + int(self.cfg.hpo_latency_s * 1000), self._start_round(v))
            return []
        if o.record == "TrialMetric":
            return self.aggregator.on_metric(v, now / 1000, now)
        if o.record == "UnmaskRequest":
            return [x for rounds in self.rounds[v["model"]] for x in rounds.unmask(v)]
        if o.record == "UnmaskShare":
            return self.aggregator.on_share(v)
        if o.record == "AggregateResult":
            if self.cfg.replayed_rounds:
                self.log["own_aggregates"].append(v)
                v = self._replayed(v)
            if v is None:
                return []
            self.log["aggregates"].append(v)
            return self.controller.on_aggregate(v, now)
        if o.record == "Deployment":
            self.log["deployments"].append(v)
            for rep in self.replicas.get(v["model"], []):
                self._deploy(rep, v)
            if v["model"] in self.replicas:
                self._share(v["model"])
            self.controller.on_deployment(v)
            self.shadow.on_deployment(v)
            return []
        if o.record == "RoutingWeights":
            if o.partition is None:
                self.log["weights"].append((self.n, v))
            else:
                for replicas in self.replicas.values():
                    replicas[o.partition % self.cfg.replicas].on_weights(o.partition, v)
        return []

    def _deploy(self, rep: ModelReplica, d: Deployment) -> None:
        """Apply ``d`` to ``rep`` now, or, for a shadow the pipeline run started at a later request
        on that host (``shadow_starts``), just before that request."""
        if d["action"] in ("PROMOTE", "REJECT"):  # a verdict ends the held shadow: start it first, in order
            self._start_held(rid=None, rep=rep)
        rid = self.start_at.get((rep.cfg.host_id, d["config_id"])) if d["action"] == "SHADOW_START" else None
        if rid is None or rid in self.passed:
            rep.on_deployment(d)
        else:
            self.held.setdefault(rid, []).append((rep, d))

    def _start_held(self, rid: str | None, rep: ModelReplica | None = None) -> None:
        """Start the shadows held for request ``rid`` (or all of ``rep``'s)."""
        for at in [rid] if rid is not None else list(self.held):
            starting = [(r, d) for r, d in self.held.get(at, []) if rep is None or r is rep]
            self.held[at] = [(r, d) for r, d in self.held.get(at, []) if (r, d) not in starting]
            if not self.held[at]:
                del self.held[at]
            for r, d in starting:
                r.on_deployment(d)
                self._share(d["model"])

    def _start_round(self, trigger: dict) -> Callable[[], list[Output]]:
        """What each host does on a trigger (``agents.host``): send its round keys at once and
        start its round; the returned call hands over the round's metrics once it is due."""
        started = []
        executor = shared_executor() if self.cfg.background_rounds else None
        for model, replicas in self.replicas.items():
            if trigger["models"] and model not in trigger["models"]:
                continue
            keys = []
            for rep, rounds in zip(replicas, self.rounds[model], strict=True):
                rep.on_trigger()
                keys += rounds.on_trigger(trigger)
                rounds.waiting.clear()  # run here, not by the host's worker process
            for rounds in self.rounds[model]:
                for k in keys:
                    refused = rounds.on_round_keys(cast(Any, k.value))
                    if refused:
                        raise RuntimeError(refused)
            for r, (rep, rounds) in enumerate(zip(replicas, self.rounds[model], strict=True)):
                if (model, r) in self.round_of:  # its previous round's agent, with what it spent
                    rounds.agent = self.round_of[model, r].agent
                events = rep.window.as_of(trigger["as_of"])
                pending = run_in_background(rounds.agent, trigger["round_id"], dict(rep.config), events,
                                            trigger["design"], executor)
                self.round_of[model, r] = pending
                started.append((model, r, pending))
        return lambda: self._finish_round(trigger, started)

    def _finish_round(self, trigger: dict, started: list[tuple[str, int, Pending]]) -> list[Output]:
        out = []
        for model, r, pending in started:
            outcome, agent, spent = pending.result()
            rep, rounds = self.replicas[model][r], self.rounds[model][r]
            if self.round_of[model, r] is pending:  # no later round started from it yet
                rounds.agent = agent
            out += rounds.metrics(trigger, outcome)
            rep.epsilon_spent = spent  # as of this round (a later one may be running already)
            if outcome.status != "ok":
                out.append(rep.status())  # says so: epsilon_spent at the budget
        return out

    def cancel_rounds(self) -> None:
        """Drop the rounds not yet started (a run that failed need not wait for them)."""
        for pending in self.round_of.values():
            pending.cancel()

    def settle(self) -> None:
        """Wait for the rounds still running (their metrics due after the last request): each
        host's agent then holds everything it spent."""
        for (model, r), pending in self.round_of.items():
            self.rounds[model][r].agent = pending.agent


Later = list[Output] | Callable[[], list[Output]]
