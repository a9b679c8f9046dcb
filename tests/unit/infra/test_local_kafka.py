import uuid

from infra import local_kafka
from infra.local_kafka import LocalKafka


def test_cluster_id_never_starts_with_a_dash(tmp_path, monkeypatch):
    # 0xF8... encodes to "-..." in URL-safe base64: Kafka's StorageTool would read it as an option
    ids = iter([uuid.UUID(bytes=b"\xf8" + b"\x00" * 15), uuid.UUID(bytes=b"\x10" * 16)])
    monkeypatch.setattr(local_kafka.uuid, "uuid4", lambda: next(ids))
    cid = LocalKafka(tmp_path, nodes=1)._cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
    assert LocalKafka(tmp_path, nodes=1)._cluster_id() == cid  # kept once written
