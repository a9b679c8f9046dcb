from fedrift.monitor import PipelineView


def test_a_hosts_shadow_started_at_its_earliest_shadowed_request_by_event_time():
    view = PipelineView(event_times={"r-1": 10, "r-2": 20, "r-3": 30})
    # results arrive by their keys' partitions, not in the hosts' order
    view.shadowed = {("pa-0", "c1"): ["r-3", "r-1"], ("pa-1", "c1"): ["r-2", "r-3"]}
    assert view.shadow_starts() == (("pa-0", "c1", "r-1"), ("pa-1", "c1", "r-2"))


def test_the_replay_places_the_rounds_metrics_at_the_earliest_shadow_start():
    view = PipelineView(triggers=[{"round_id": "a", "time": 1000}], deployments=[
        {"action": "SHADOW_START", "round_id": "a", "time": 3000},
        {"action": "SHADOW_START", "round_id": "a", "time": 7000},
    ])
    assert view.hpo_latency_s() == 4.0 and view.hpo_latency_s(earliest=True) == 2.0
    replay = view.replay()
    assert replay["hpo_latency_s"] == 2.0 and "control_delay_s" not in replay  # no weights seen: not measured
    assert replay["replayed_rounds"] == ((),) and replay["shadow_starts"] == ()
