import json
import subprocess
import sys

from fedrift.config import Settings
from fedrift.core.models import config_id
from fedrift.datasets import synthetic
from fedrift.monitor import by_round
from fedrift.simulate import SimConfig, Simulation, run

FAST_POOL = ("linear", "gnb", "sgd")


def test_simulation_is_deterministic_for_a_seed_and_runs_the_whole_loop():
    cfg = SimConfig.from_settings(Settings(models=FAST_POOL), seed=7)
    a = run(synthetic("sea", 9000, seed=7), cfg).result()
    b = run(synthetic("sea", 9000, seed=7), cfg).result()
    assert a == b
    assert a["n"] == 9000 and a["drift"]["triggers"], "SEA switches concept every 2250 events"
    cold = cfg.pipeline.cold_start_at  # a round without drift, when switched on and no drift came first
    cold_start = int(bool(cold) and min(a["drift"]["triggers"]) > cold)
    assert a["hpo"]["rounds"] == len(a["drift"]["triggers"]) + cold_start and a["hpo"]["aggregates"] > 0
    assert a["privacy"]["epsilon_spent_max"] > 0
    assert a["privacy"]["epsilon_spent_max"] <= a["privacy"]["epsilon_budget"]
    systems = a["systems"]
    assert {"fedrift", "patent", "uniform", "oracle_window"} | {f"model:{m}" for m in FAST_POOL} == set(systems)
    best_single = max(systems[f"model:{m}"]["accuracy"] for m in FAST_POOL)
    assert systems["oracle_window"]["accuracy"] >= best_single
    assert all(0 <= s["accuracy"] <= 1 for s in systems.values())
    vs_best = a["comparison"]["vs_best_single"]
    assert systems[vs_best["against"]]["accuracy"] == best_single
    assert abs(vs_best["gap"] - (systems["fedrift"]["accuracy"] - best_single)) < 1e-5
    assert vs_best["low"] <= vs_best["gap"] <= vs_best["high"]


def test_cli_json_has_the_documented_shape():
    proc = subprocess.run(
        [sys.executable, "-m", "fedrift.cli", "simulate", "--stream", "stagger", "--n", "1500", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"n", "seed", "systems", "drift", "hpo", "shadow", "privacy"}
    assert set(out["systems"]["fedrift"]) == {"accuracy", "kappa_temporal"}
    assert set(out["shadow"]) >= {"promotions", "rejections"}
    assert set(out["privacy"]) == {"epsilon_spent_max", "epsilon_budget"}
    assert isinstance(out["drift"]["triggers"], list) and isinstance(out["hpo"]["rounds"], int)


def test_cli_rejects_bad_input_in_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,0\n1,x,1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "fedrift.cli", "simulate", "--data", str(bad), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "bad.csv:3" in proc.stderr and "Traceback" not in proc.stderr


def test_shared_training_makes_every_replica_learn_every_labelled_request_once():
    """Each replica scores and windows only its own partitions, yet its model learns them all."""
    for shared in (True, False):
        cfg = SimConfig.from_settings(Settings(models=("linear", "gnb"), shared_training=shared), seed=1)
        sim = run(synthetic("sea", 1200, seed=1), cfg)
        for replicas in sim.pipeline.replicas.values():
            assert sum(r.n_learned for r in replicas) == 1200
            for r in replicas:
                assert r.n_learned + r.n_peer_learned == (1200 if shared else r.n_learned)
                assert 0 < r.n_learned < 1200 and len(r.window.events) <= r.n_learned


def test_routing_weights_reach_the_hosts_control_delay_s_after_the_controller_sent_them():
    def versions(delay: float) -> tuple[int, int]:
        cfg = SimConfig.from_settings(Settings(models=("linear", "gnb")), seed=1, rate=100.0, control_delay_s=delay)
        pipe = run(synthetic("sea", 300, seed=1), cfg).pipeline
        hosts = min(max(rt.version for rt in r.partitions.values()) for reps in pipe.replicas.values() for r in reps)
        return pipe.log["weights"][-1][1]["version"], hosts

    sent, applied = versions(0.0)
    assert applied == sent
    sent, applied = versions(1.0)  # a second is 100 requests here, and weights change every few at first
    assert 0 < applied < sent


def test_rounds_in_the_worker_process_give_the_in_process_result():
    results = []
    for background in (False, True):
        cfg = SimConfig.from_settings(Settings(models=FAST_POOL), seed=7, background_rounds=background)
        results.append(run(synthetic("sea", 9000, seed=7), cfg).result())
    assert results[0]["hpo"]["rounds"] >= 1 and results[0]["privacy"]["epsilon_spent_max"] > 0
    assert results[0] == results[1]  # ledgers included: the worker's agents come back with what they spent


def test_replayed_aggregates_stand_in_for_another_noise_draw():
    """The aggregates a run published carry its DP noise's outcome: replayed into a run with other
    noise, they reproduce what the first run served and decided."""
    def simulate(draw: int, replayed: tuple[tuple[dict, ...], ...] = ()):
        cfg = SimConfig.from_settings(Settings(models=FAST_POOL), seed=7, noise_draw=draw, replayed_rounds=replayed)
        return run(synthetic("sea", 9000, seed=7), cfg)

    def decisions(sim) -> list[tuple]:
        return [(d["action"], d["model"], d["config_id"]) for d in sim.pipeline.log["deployments"]]

    other, own = simulate(1), simulate(0)
    winners = [(a["model"], a["best_config_id"]) for a in other.pipeline.log["aggregates"]]
    assert winners != [(a["model"], a["best_config_id"]) for a in own.pipeline.log["aggregates"]]
    log = other.pipeline.log
    replay = simulate(0, by_round(log["aggregates"], log["triggers"]))
    assert [(a["model"], a["best_config_id"]) for a in replay.pipeline.log["aggregates"]] == winners
    assert decisions(replay) == decisions(other) != decisions(own)
    first = by_round(own.pipeline.log["aggregates"], own.pipeline.log["triggers"])[0]
    assert tuple(replay.pipeline.log["own_aggregates"][: len(first)]) == first  # its own first round, kept beside
    assert "own_aggregates" not in own.pipeline.log  # nothing replaced, nothing kept twice
    assert replay.correct["fedrift"] == other.correct["fedrift"]


def test_a_replayed_shadow_start_waits_for_its_request_on_its_host_only():
    """``shadow_starts`` place one host's shadow where a pipeline run's host started it; the
    other hosts start theirs when the deployment comes, as without them."""
    rows = list(synthetic("sea", 9000, seed=7))

    def stepped(starts=()):
        sim = Simulation(SimConfig.from_settings(Settings(models=FAST_POOL), seed=7, shadow_starts=starts))
        started: dict[str, int] = {}  # host -> the first request its shadow answered
        for i, (x, y) in enumerate(rows):
            sim.step(x, y)
            for reps in sim.pipeline.replicas.values():
                for rep in reps:
                    if rep.shadow_config is not None:
                        started.setdefault(rep.cfg.host_id, i + 1)
        sim.pipeline.cancel_rounds()
        return sim, started

    own, started = stepped()
    first = min(started, key=started.__getitem__)
    start = next(d for d in own.pipeline.log["deployments"] if d["action"] == "SHADOW_START"
                 and d["model"] == first.rsplit("-", 1)[0])
    later = started[first] + 300
    _, moved = stepped(((first, start["config_id"], f"sim-{later}"),))
    assert moved[first] == later + 1  # applied just before request ``later``: seen after it was served
    assert {h: k for h, k in moved.items() if h != first} == {h: k for h, k in started.items() if h != first}


def test_a_held_shadow_start_waits_through_a_prune_and_starts_before_a_verdict():
    """A PRUNE takes a model out of routing, it does not end its shadow: a start the pipeline run's
    host made later stays held; a PROMOTE or REJECT ends the shadow, so the start comes first."""
    config = {"window": 300}
    host = "gnb-0"
    starts = ((host, config_id(config), "sim-5000"),)
    sim = Simulation(SimConfig.from_settings(Settings(models=FAST_POOL), seed=7, shadow_starts=starts))
    pipe = sim.pipeline
    rep = next(r for r in pipe.replicas["gnb"] if r.cfg.host_id == host)

    def deploy(action: str) -> None:
        pipe._deploy(rep, {"model": "gnb", "action": action, "config_id": config_id(config),
                           "config_json": json.dumps(config), "round_id": "r", "time": 0, "reason": "", "evidence": {}})

    deploy("SHADOW_START")
    deploy("PRUNE")
    assert rep.shadow_config is None and pipe.held
    deploy("PROMOTE")
    assert not pipe.held and rep.config == config  # started, then promoted
