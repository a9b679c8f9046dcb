"""``fedrift simulate`` describes the product: on the same drifting stream, the pipeline on the real
broker and the simulator (the same stage objects on an in-memory bus) serve the same accuracy
within 0.5 points, with the same drift trigger (± one analyzer window).

The simulator is given the two delays it cannot know, measured on the pipeline run: how long this
machine's hosts took from a trigger to their round's shadow deployments (it decides at which stream
position a shadow starts, so which candidates race and are promoted), and how long from a
request to routing weights that count it (how many requests after a drift are still served by
the old leader)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from fedrift import datasets
from fedrift.core.drift import DriftConfig
from fedrift.kafka_io import RecordProducer
from fedrift.monitor import PipelineMonitor
from fedrift.pipeline import Pipeline
from fedrift.produce import produce, request_events
from fedrift.simulate import SimConfig, run
from tests.integration.conftest import admin, client, ensure_topics

pytestmark = pytest.mark.integration

N, RATE = 10_000, 125.0  # a rate the 2-core CI machine sustains with shared training (hosts keep up)


def test_pipeline_and_simulator_serve_the_same_accuracy(settings, tmp_path):
    settings = dataclasses.replace(settings, models=("linear", "hat", "gnb"), replicas=3, n_features=5)
    rows = list(datasets.synthetic("shift", N, seed=21))
    catalog = ensure_topics(settings)
    monitor = PipelineMonitor(admin(settings), catalog)
    with Pipeline(settings, tmp_path / "logs") as pipeline:
        pipeline.wait_ready()
        produce(RecordProducer(client(settings)), catalog, request_events(rows, run_id="agree"), rate=RATE)
        deadline = time.monotonic() + 120
        while monitor.poll(1).n_predicted < N and time.monotonic() < deadline:
            pipeline.supervise()
        view = monitor.poll(2)
    monitor.close()
    assert view.n_predicted == N and view.duplicates == 0
    served = view.accuracy()
    latency, delay = view.hpo_latency_s(), view.control_delay_s()
    assert delay is not None
    measured = {"control_delay_s": delay} | ({} if latency is None else {"hpo_latency_s": latency})  # None: no shadow
    sim = run(rows, SimConfig.from_settings(settings, run_id="agree", rate=RATE, **measured)).result()
    simulated = sim["systems"]["fedrift"]["accuracy"]
    decisions = [(d["action"], d["model"], d["config_id"]) for d in view.deployments
                 if d["action"] in ("PROMOTE", "REJECT")]
    assert abs(served - simulated) <= 0.005, (served, simulated, measured, decisions, sim["shadow"])
    pipeline_triggers = [d["position"] for d in view.drift if d["drifted"]]
    window = DriftConfig().window
    assert len(pipeline_triggers) == len(sim["drift"]["triggers"]), (pipeline_triggers, sim["drift"])
    assert all(abs(a - b) <= window for a, b in zip(pipeline_triggers, sim["drift"]["triggers"], strict=True))
