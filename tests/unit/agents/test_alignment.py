"""TimeAligned: a host's request partitions merged in time order, as the simulator replays them."""

import random

from agents.alignment import TimeAligned


def _chunks(n_partitions: int, n: int, chunk: int, seed: int):
    """Records 0..n-1 (timestamp = index) spread over partitions at random, then handed over the
    way a consumer does: ``chunk`` records of one partition at a time, partitions in random turn."""
    rng = random.Random(seed)
    per: list[list[int]] = [[] for _ in range(n_partitions)]
    for t in range(n):
        per[rng.randrange(n_partitions)].append(t)
    fetches = []
    while any(per):
        p = rng.choice([q for q in range(n_partitions) if per[q]])
        fetches.append([(p, t, t) for t in per[p][:chunk]])
        per[p] = per[p][chunk:]
    return fetches


def test_chunked_partitions_come_out_in_time_order_while_the_consumer_is_behind():
    buf = TimeAligned(cap=10_000, idle_ms=0)
    buf.watch(range(3))
    out = []
    for fetch in _chunks(3, 3000, chunk=200, seed=1):
        buf.add(fetch)
        out += buf.take(500, drained=False)
    out += buf.take(10_000, drained=True)
    assert out == list(range(3000)) and buf.inversions == 0


def test_without_alignment_the_same_fetches_are_far_out_of_order():
    """The test above can fail: the consumer's own order is hundreds of records off."""
    flat = [t for fetch in _chunks(3, 3000, chunk=200, seed=1) for _, t, _ in fetch]
    assert max(abs(i - t) for i, t in enumerate(flat)) > 100


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_idle_partition_holds_a_drained_consumer_back_for_idle_ms_at_most():
    clock = Clock()
    buf = TimeAligned(cap=10_000, idle_ms=100, clock=clock)
    buf.watch(range(3))  # partition 2 never delivers
    buf.add([(0, 1, "a"), (1, 2, "b")])
    assert buf.take(10, drained=False) == []
    assert buf.take(10, drained=True) == []
    clock.now = 0.1
    assert buf.take(10, drained=True) == ["a", "b"] and buf.inversions == 0
    buf.add([(2, 0, "late")])  # past idle_ms: handled late, and counted
    clock.now = 0.2
    assert buf.take(10, drained=True) == ["late"] and buf.inversions == 1


def test_an_older_record_in_transit_within_idle_ms_goes_first_though_the_consumer_was_drained():
    clock = Clock()
    buf = TimeAligned(cap=10_000, idle_ms=100, clock=clock)
    buf.watch(range(3))
    buf.add([(0, 10, "a10")])
    assert buf.take(10, drained=True) == []
    clock.now = 0.05
    buf.add([(1, 5, "b5"), (2, 12, "c12")])
    assert buf.take(10, drained=True) == ["b5"]
    clock.now = 0.1
    assert buf.take(10, drained=True) == ["a10"]
    clock.now = 0.2
    assert buf.take(10, drained=True) == ["c12"]


def test_the_cap_bounds_what_an_idle_partition_can_hold_back():
    buf = TimeAligned(cap=100)
    buf.watch(range(2))
    buf.add((0, t, t) for t in range(250))
    assert buf.take(1000, drained=False) == list(range(150)) and len(buf) == 100


def test_clear_forgets_the_buffer_and_what_each_partition_delivered():
    buf = TimeAligned()
    buf.watch(range(2))
    buf.add([(0, 5, "x"), (1, 9, "y")])
    buf.clear()
    assert len(buf) == 0 and buf.safe_until < 0


def test_a_label_waits_for_its_request_even_when_fetched_first():
    """A label released (and committed) before its request would, after a restart, be replayed
    silently while its request is handled live: the shadow result of that pair would be lost."""
    buf = TimeAligned(cap=1000, idle_ms=0)
    buf.watch(["req0", "req1"])
    buf.add([("labels", 12, "label of r1"), ("req0", 10, "r0"), ("req0", 20, "r2")])
    assert buf.take(10, drained=False) == []  # req1 has delivered nothing: r1 (t=11) may be there
    buf.add([("req1", 11, "r1"), ("req1", 30, "r3")])
    assert buf.take(10, drained=False) == ["r0", "r1", "label of r1", "r2"]
    assert buf.take(10, drained=True) == ["r3"]


def test_unwatched_partitions_hold_nothing_back():
    buf = TimeAligned(cap=1000)
    buf.watch(["req"])
    buf.add([("req", 5, "a"), ("labels", 1, "l")])
    assert buf.take(10, drained=False) == ["l", "a"]


def test_a_marker_is_in_its_place_not_an_inversion():
    """A routing-weights marker carries its writer's clock, older or newer than the requests around it."""
    buf = TimeAligned(cap=100, idle_ms=0)
    buf.watch(range(2))
    buf.add([(0, 10, "r10"), (0, None, "marker"), (1, 12, "r12")])
    assert buf.take(10, drained=True) == ["r10", "marker", "r12"] and buf.inversions == 0


def test_ties_go_to_the_partition_watched_first_whatever_order_they_arrive_in():
    buf = TimeAligned(cap=100, idle_ms=0)
    buf.watch([0, 1])
    buf.add([(1, 5, "p1@5"), (0, 5, "p0@5")])
    assert buf.take(10, drained=True) == ["p0@5", "p1@5"]


def test_one_partition_alone_has_no_inversions():
    buf = TimeAligned(cap=100, idle_ms=0)
    buf.watch([0])
    buf.add([(0, 100, "r100"), (0, 105, "marker"), (0, 103, "r103"), (0, 104, "r104")])
    assert len(buf.take(10, drained=True)) == 4 and buf.inversions == 0


def test_a_marker_has_a_place_in_its_partition_and_holds_no_other_back():
    """A weights marker stamped ahead of the requests (the controller's clock) used to hold its
    partition until the others caught up with that clock; the request behind it then came out
    after newer requests of the other partition ."""
    buf = TimeAligned(cap=100, idle_ms=0)
    buf.watch(range(2))
    buf.add([(0, 10, "r10"), (0, None, "marker"), (0, 14, "r14"), (1, 12, "r12"), (1, 16, "r16")])
    assert buf.take(10, drained=True) == ["r10", "marker", "r12", "r14", "r16"] and buf.inversions == 0
    stamped = TimeAligned(cap=100, idle_ms=0)
    stamped.watch(range(2))
    stamped.add([(0, 10, "r10"), (0, 50, "marker"), (0, 14, "r14"), (1, 12, "r12"), (1, 16, "r16")])
    assert stamped.take(10, drained=True) == ["r10", "r12", "r16", "marker", "r14"] and stamped.inversions == 1


def test_a_marker_first_in_its_partition_goes_at_once():
    buf = TimeAligned(cap=100, idle_ms=0)
    buf.watch(range(2))
    buf.add([(0, None, "marker"), (1, 5, "r5")])
    assert buf.take(10, drained=False) == ["marker"]
