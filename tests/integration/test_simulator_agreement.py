"""``fedrift simulate`` describes the product: on the same drifting stream, the pipeline on the real
broker and the simulator (the same stage objects on an in-memory bus) serve the same accuracy within
0.5 points (the issue's target; ``make test`` runs this test first and alone: see ``TOLERANCE``),
with the same drift trigger (± one analyzer window) and the same shadows, promotions and rejections.

The simulator is given what it cannot know of the pipeline run's timing: at which request each
host's shadow started (``PipelineView.shadow_starts``: it decides which pairs a shadow's test
counts; replayed as one mean trigger-to-shadow latency per round instead, one verdict came out on
one side only in 3 of 13 runs), and how long from a request to routing weights that count it (how
many requests after a drift are still served by the old leader). It is also given the outcome of the
pipeline's DP noise, a fresh secure draw: the aggregates its rounds published (``replayed_rounds``),
which say which configuration won each model's round. Without them, the simulator's own noise picked
another winner than the pipeline for one or two of the three models in each of 3 runs, and the gap
reached −0.66 points in CI. Served accuracy is compared after the first ``COLD`` requests: the
pipeline's hosts answer their first requests 1.4–1.9 s late (cold consumers and first transactions),
so its first weights reach the stream hundreds of requests after the simulator's
(``docs/architecture.md``).

The requests carry distinct timestamps (``fedrift.produce.DistinctMillis``), so the hosts merge
their partitions back into the order the simulator replays. With wall-clock stamps 6 % of
neighbouring requests shared a millisecond and were merged in either order: that was enough for one
replica's error detector to fire one check (32 events) later, miss a status and leave the trigger to
the input detector 360 requests later (2 of 5 runs), and for the gap to reach −0.57 points in CI.
The hosts merge the routing-weights markers in their place, not by the controller's clock
(``agents.alignment``): merged by it, 31–106 requests per run were learned after newer ones. The
pool is three online linear and Bayes learners (``linear``, ``pa``, ``gnb``), which keep up at this
rate with shared training on the 2-core CI machine. ``benchmarks/agreement.py`` measures the default
pool over several runs. An error-drift trigger needs two hosts' detectors to agree here
(``error_quorum=2``, in both); the default (1) keeps every detector's sensitivity."""

from __future__ import annotations

import dataclasses
import time
from statistics import mean

import pytest

from fedrift import datasets
from fedrift.core.drift import DriftConfig
from fedrift.kafka_io import RecordProducer
from fedrift.monitor import PipelineMonitor, by_round
from fedrift.pipeline import Pipeline
from fedrift.produce import clock_for, produce, request_events
from fedrift.simulate import SimConfig, run
from tests.integration.conftest import admin, client, ensure_topics

# `make test` runs this first, by itself (marker ``alone``): inside a full test run on the 2-core
# CI machine the hosts' and the analyzer's delays vary within a run (the analyzer read 1,300
# requests behind the hosts) and the gap reached 1.1 points
pytestmark = [pytest.mark.integration, pytest.mark.alone]

N, RATE = 10_000, 125.0  # a rate the 2-core CI machine sustains with shared training (hosts keep up)
COLD = 500
# the target; measured -0.13 to +0.02 points alone, the pipeline's aggregates replayed (4 runs)
TOLERANCE = 0.005


def _decisions(deployments: list[dict]) -> list[tuple[str, str, str]]:
    return sorted((d["action"], d["model"], d["config_id"]) for d in deployments
                  if d["action"] in ("SHADOW_START", "PROMOTE", "REJECT"))


def test_pipeline_and_simulator_serve_the_same_accuracy(settings, tmp_path):
    settings = dataclasses.replace(settings, models=("linear", "pa", "gnb"), replicas=3, n_features=5,
                                   drift=dataclasses.replace(settings.drift, error_quorum=2))
    rows = list(datasets.synthetic("shift", N, seed=21))
    catalog = ensure_topics(settings)
    monitor = PipelineMonitor(admin(settings), catalog)
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready()
        # distinct timestamps: the hosts merge the partitions back into the order the simulator replays
        events = request_events(rows, run_id="agree", clock=clock_for(RATE))
        produce(RecordProducer(client(settings)), catalog, events, rate=RATE)
        deadline = time.monotonic() + 120
        while monitor.poll(1).n_predicted < N and time.monotonic() < deadline:
            pipeline.supervise()
        view = monitor.poll(2)
    monitor.close()
    assert view.n_predicted == N and view.duplicates == 0
    served = mean(pred == view.requests[rid][1] for rid, (_, pred) in view.served.items()
                  if int(rid.rsplit("-", 1)[1]) >= COLD)  # ids are agree-<position in the stream>
    delay = view.control_delay_s()
    assert delay is not None, "no routing weights came"
    # the pipeline's DP noise is a fresh secure draw: its aggregates say which configurations it
    # chose; its hosts' timing, where each one's shadows started
    replay = view.replay()
    simulation = run(rows, SimConfig.from_settings(settings, run_id="agree", rate=RATE, **replay))
    sim = simulation.result()
    simulated = mean(simulation.correct["fedrift"][COLD:])
    measured = {k: replay[k] for k in ("control_delay_s", "hpo_latency_s") if k in replay}
    print(f"served {served:.4f}, simulated {simulated:.4f}, gap {100 * (served - simulated):+.2f} points; {measured}; "
          f"{len(replay['shadow_starts'])} shadow starts")
    _check_triggers(view, sim)
    _check_rounds(view, simulation.pipeline.log)
    decided = _decisions(view.deployments), _decisions(simulation.pipeline.log["deployments"])
    assert abs(served - simulated) <= TOLERANCE, (served, simulated, measured, decided)
    # the shadows follow from the replayed aggregates; their tests and verdicts are each side's own
    evidence = _evidence(view.deployments, simulation.pipeline)
    print(f"shadow evidence (n, wins, losses): {evidence}")
    assert decided[0] == decided[1], (decided, evidence)


def _evidence(deployments: list[dict], sim) -> dict:
    """Each side's paired counts: at its verdicts, and for the simulator's shadows still open."""
    def counts(e: dict) -> tuple:
        return tuple(int(e.get(k, -1)) for k in ("n", "wins", "losses"))
    return {
        "pipeline": [(d["action"], d["model"], counts(d["evidence"])) for d in deployments
                     if d["action"] in ("PROMOTE", "REJECT")],
        "simulator": [(d["action"], d["model"], counts(d["evidence"])) for d in sim.log["deployments"]
                      if d["action"] in ("PROMOTE", "REJECT")],
        "simulator open": {m: counts(ev.evidence) for m, (_, ev, _) in sim.shadow.active.items()},
    }


def _check_triggers(view, sim: dict) -> None:
    """The same drift triggers, each within one analyzer window, and so the same HPO rounds
    (``PipelineView.trigger_positions``: an error trigger is placed by the clock)."""
    pipeline_triggers = view.trigger_positions()
    window = DriftConfig().window
    print(f"triggers: pipeline {pipeline_triggers}, simulator {sim['drift']['triggers']}")
    assert len(pipeline_triggers) == len(sim["drift"]["triggers"]), (pipeline_triggers, sim["drift"])
    assert all(abs(a - b) <= window for a, b in zip(pipeline_triggers, sim["drift"]["triggers"], strict=True)), (
        pipeline_triggers, sim["drift"], [(d["source"], d["position"], d["time"]) for d in view.drift if d["drifted"]])
    assert sim["hpo"]["rounds"] == len(view.triggers), (sim["hpo"], [t["round_id"] for t in view.triggers])


def _check_rounds(view, log: dict) -> None:
    """Each HPO round aggregated the same models in the simulator's own run as in the pipeline's
    (a round that failed on one side only is a difference the replay must not hide). The noised
    scores of configurations both evaluated are printed: the DP noise makes them differ."""
    own = by_round(log["own_aggregates"], log["triggers"])
    theirs = view.aggregates_by_round()
    assert [sorted(a["model"] for a in r) for r in own] == [sorted(a["model"] for a in r) for r in theirs]
    for mine, their in zip(own, theirs, strict=True):
        for a, b in zip(sorted(mine, key=lambda a: a["model"]), sorted(their, key=lambda a: a["model"]), strict=True):
            scores = {e["config_id"]: e["score"] for e in b["leaderboard"]}
            common = [(e["score"], scores[e["config_id"]]) for e in a["leaderboard"] if e["config_id"] in scores]
            print(f"round scores {a['model']}: simulator/pipeline {[(round(x, 3), round(y, 3)) for x, y in common]}")
