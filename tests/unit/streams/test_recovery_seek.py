"""``make_recovery_seek_safe`` on a recording stand-in for Faust's consumer (no broker needed);
the real broker case is ``tests/integration/test_router_restart.py``."""

import asyncio
from collections import namedtuple
from types import SimpleNamespace

from streams.app import make_recovery_seek_safe

TP = namedtuple("TP", "topic partition")


class RecordingConsumer:
    """Committed offsets as aiokafka reports them, and a log of what was done with them."""

    def __init__(self, committed: dict) -> None:
        self.committed, self.log, self.flow_active = committed, [], True

    async def seek_to_committed(self):
        await asyncio.sleep(0)
        self.log.append("seek_to_committed")
        return dict(self.committed)

    async def perform_seek(self):
        self.log.append(("flow during seek", self.flow_active))
        await self.seek_to_committed()

    async def earliest_offsets(self, *tps):
        return {tp: 5 for tp in tps}

    async def seek_wait(self, offsets):
        self.log.append(("seek", dict(offsets)))

    def stop_flow(self):
        self.flow_active = False


def _app(consumer):
    return SimpleNamespace(consumer=consumer, tables=SimpleNamespace(changelog_topics={"served-changelog"}))


def test_uncommitted_stream_partitions_are_sought_to_earliest_with_the_flow_held():
    committed = {TP("requests", 0): None, TP("requests", 1): 0, TP("requests", 2): 7, TP("served-changelog", 0): None}
    consumer = RecordingConsumer(committed)
    make_recovery_seek_safe(_app(consumer))
    asyncio.run(consumer.perform_seek())
    assert consumer.log == [
        ("flow during seek", False),
        "seek_to_committed",
        ("seek", {TP("requests", 0): 5, TP("requests", 1): 5}),  # not the committed one, not the changelog
    ]
    assert not consumer.flow_active  # Faust turns it back on with its app flow control


def test_a_seek_asked_for_while_one_runs_does_not_seek_again():
    consumer = RecordingConsumer({TP("requests", 0): 3})
    make_recovery_seek_safe(_app(consumer))

    async def both():
        await asyncio.gather(consumer.perform_seek(), consumer.perform_seek())

    asyncio.run(both())
    assert consumer.log.count("seek_to_committed") == 1
